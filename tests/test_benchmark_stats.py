"""The error bars the benchmarks print mean what they say: benchmarks/common.paired_difference's 95%
interval covers the true mean difference of seed-paired runs in 95% of simulated fresh seed sets, and its
standard error is the spread of the mean difference over those sets."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import paired_difference  # noqa: E402


@pytest.mark.parametrize("seeds", [3, 4, 8])
def test_paired_difference_covers_the_true_difference(seeds):
    rng = np.random.default_rng(0)
    true_shift, sets = 0.7, 4000
    covered, means, ses = 0, [], []
    for _ in range(sets):
        # A seed moves both runs of a pair alike (shared data order and init) and each run by its own noise.
        seed_effect = rng.normal(0, 5, seeds)
        a = seed_effect + true_shift + rng.normal(0, 1, seeds)
        b = seed_effect + rng.normal(0, 1, seeds)
        mean, se, (low, high) = paired_difference(list(a), list(b))
        assert mean == pytest.approx(float(np.mean(a - b)))
        covered += low <= true_shift <= high
        means.append(mean)
        ses.append(se)
    assert abs(covered / sets - 0.95) < 0.012  # binomial s.d. of the rate over 4,000 sets: 0.0034
    # The s.e. estimates the spread of the mean over fresh seed sets: the root mean square of the
    # estimate is that spread (sqrt(2)/sqrt(seeds) here), within the simulation's own error.
    assert np.sqrt(np.mean(np.square(ses))) == pytest.approx(np.std(means), rel=0.05)
    assert np.std(means) == pytest.approx(np.sqrt(2 / seeds), rel=0.05)


def test_paired_difference_refuses_unpaired_or_single_runs():
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        paired_difference([1.0], [2.0])
