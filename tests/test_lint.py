"""ruff over the package, tests, benchmarks and docs, with the rules in pyproject.toml."""

import subprocess
import sys

from conftest import REPO


def test_ruff_passes():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=REPO, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
