"""What a run writes: TensorBoard event files read back as TensorBoard reads them."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from genmodels.config import Config
from genmodels.recorder import RunRecorder


def test_a_resumed_run_drops_what_the_killed_one_wrote_after_its_checkpoint(tmp_path):
    # A run killed after writing steps 5 and 10 (flushed, never closed), resumed from its checkpoint
    # at step 5 within the same second: TensorBoard reads event files in name order, so the new
    # file must sort after the old one for the purge of step 10 to apply.
    killed = RunRecorder(tmp_path, Config())
    killed.open(None)
    killed.scalars("heldout", {"neg_elbo": 1.0}, 5)
    killed.scalars("heldout", {"neg_elbo": 2.0}, 10)
    killed.flush()
    resumed = RunRecorder(tmp_path, Config())
    resumed.open(resumed_at=5)
    resumed.scalars("heldout", {"neg_elbo": 3.0}, 10)
    resumed.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("heldout/neg_elbo")] == [(5, 1.0), (10, 3.0)]
