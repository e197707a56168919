import re

import pytest
import torch

from genmodels.errors import UserError
from genmodels.runtime import check_torch

from conftest import cli


@pytest.mark.parametrize("version", ["2.5.1", "2.4.0+cu121", "1.13.1"])
def test_an_old_torch_is_refused(version):
    with pytest.raises(UserError, match=re.escape(f"torch {version} is installed; genmodels needs torch >= 2.6 ")):
        check_torch(version)


@pytest.mark.parametrize("version", ["2.6.0", "2.14.1+cu130", "3.0.0a0", "2.10.0.dev20260101"])
def test_a_current_torch_passes(version):
    check_torch(version)


def test_the_command_line_checks_before_reading_anything(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    code, out, err = cli("eval", str(tmp_path / "no_such_run"))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "torch 2.5.1 is installed" in lines[0] and "CVE-2025-32434" in lines[0]
