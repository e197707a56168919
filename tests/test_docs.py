"""The documentation a user reads stays true: the configuration page is the one the models
generate."""

import runpy

from conftest import REPO


def test_configuration_page_is_generated_from_the_models():
    generated = runpy.run_path(str(REPO / "docs" / "generate_configuration.py"))["render"]()
    committed = (REPO / "docs" / "configuration.md").read_text()
    assert committed == generated, "docs/configuration.md is stale: run python docs/generate_configuration.py"
