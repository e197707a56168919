"""The newcomer's path: `make test` sets up what its tests need (.ci/system-packages.sh), and a user
who may not install system packages is told in one line what to install."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import REPO

SCRIPT = REPO / ".ci" / "system-packages.sh"


def test_make_test_installs_the_system_packages_before_the_tests():
    steps = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    lines = [line for line in steps.splitlines() if line.strip()]
    setup = next(i for i, line in enumerate(lines) if "system-packages.sh" in line)
    tests = next(i for i, line in enumerate(lines) if "pytest" in line)
    assert setup < tests
    assert "make test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None,
                    reason="runs the script as an unprivileged user, which needs root")
def test_a_user_without_rights_is_told_what_to_install():
    # A PATH without chromium and without sudo: the script cannot install, so it must say so. The
    # folder lies where the unprivileged user can read it, and the script comes on stdin.
    bin_dir = Path(tempfile.mkdtemp(prefix="genmodels-path-", dir="/tmp"))
    try:
        bin_dir.chmod(0o755)
        for tool in ("ls", "id", "env"):
            (bin_dir / tool).symlink_to(shutil.which(tool))
        with open(SCRIPT) as script:
            out = subprocess.run([shutil.which("runuser"), "-u", "nobody", "--", shutil.which("bash"), "-s"],
                                 stdin=script, env={"PATH": str(bin_dir)}, capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(bin_dir)
    assert out.returncode == 1 and out.stdout == "", out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genmodels: the tests need ")
    assert "chromium" in lines[0] and "sudo apt-get install" in lines[0]
