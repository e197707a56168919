"""Result files are written atomically: a writer killed at any moment leaves a file that parses."""

import json
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import torch

from genmodels.checkpoint import load_tensors
from genmodels.files import write_json, write_text

# The writers the toolkit uses for metrics.json (the Trainer), trials.csv (the study report) and
# the real-feature cache (SampleQuality), in a loop with growing contents.
WRITER = """
import sys
from pathlib import Path
import pandas as pd, torch
from genmodels.checkpoint import save_tensors
from genmodels.files import atomic_write, write_json
out = Path(sys.argv[1])
i = 0
while True:
    i += 1
    write_json(out / "metrics.json", {"epoch": i, "history": [{"epoch": e, "fid": e * 1.5} for e in range(i * 50)]})
    df = pd.DataFrame({"number": range(i * 40), "value": [0.5] * (i * 40)})
    atomic_write(out / "trials.csv", lambda tmp: df.to_csv(tmp, index=False))
    save_tensors(out / "stats.pt", {"features": torch.randn(2000 + i, 128)})
    (out / "ready").touch()
"""


def test_killed_writers_leave_parsable_files(tmp_path):
    rng = random.Random(0)
    killed_alive, epochs = 0, set()
    for _ in range(24):
        (tmp_path / "ready").unlink(missing_ok=True)  # each writer announces its own first round
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
        while not (tmp_path / "ready").exists():
            assert proc.poll() is None, "the writer died before its first round"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        killed_alive += proc.poll() is None  # the kill lands in a running writer, at a random moment
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        epochs.add(json.loads((tmp_path / "metrics.json").read_text())["epoch"])
        assert list(pd.read_csv(tmp_path / "trials.csv").columns) == ["number", "value"]
        assert load_tensors(tmp_path / "stats.pt", {"features": torch.Tensor})["features"].shape[1] == 128
    assert killed_alive == 24
    assert len(epochs) >= 3  # the kills fell in different rounds of writing, not all at one point


def test_write_text_replaces_whole_file(tmp_path):
    path = tmp_path / "a.txt"
    write_text(path, "first version, longer\n")
    write_json(path, {"b": 1})
    assert json.loads(path.read_text()) == {"b": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temporary file left behind
