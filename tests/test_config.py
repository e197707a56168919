import pytest

from genmodels.config import Config, load_config
from genmodels.schema import parse_override
from genmodels.errors import ConfigError

from conftest import REPO, run_cli


def write(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_experiment_configs_are_valid():
    from genmodels.schema import read_yaml, validate
    from genmodels.tuning.config import TuneConfig

    for path in sorted((REPO / "experiments").glob("*.yaml")):
        data = read_yaml(path)
        if path.name.startswith("tune_"):
            assert isinstance(validate(TuneConfig, data, str(path)), TuneConfig)
        else:  # validated as written: a fine-tuning config's source run need not exist here
            assert isinstance(validate(Config, data, str(path)), Config), path


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(write(tmp_path, "model:\n  hidden: 64\n"),
                      ["train.epochs=3", "optim.lr=3e-4", "optim.betas=[0.5, 0.9]"])
    assert cfg.model.hidden == 64 and cfg.train.epochs == 3
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.optim.betas == (0.5, 0.9)
    assert cfg.model.latent_dim == 20  # default kept


def test_parse_override_types():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=mnist") == (["a"], "mnist")
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        parse_override("novalue")


@pytest.mark.parametrize("text, expected", [
    ("model:\n  n_layer: 2\n", "cfg.yaml: unknown key 'model.n_layer'; did you mean 'model.n_layers'?"),
    ("trian:\n  epochs: 2\n", "cfg.yaml: unknown key 'trian'; did you mean 'train'?"),
    ("train:\n  epochs: many\n",
     "cfg.yaml: train.epochs: expected a valid integer, unable to parse string as an integer, got 'many'"),
    ("model:\n  n_layers: 0\n", "cfg.yaml: model.n_layers: expected greater than or equal to 1, got 0"),
    ("data:\n  heldout_fraction: 1.5\n", "cfg.yaml: data.heldout_fraction: expected less than 1, got 1.5"),
    ("model:\n  likelihood: poisson\n",
     "cfg.yaml: model.likelihood: expected 'bernoulli', 'gaussian' or 'logistic256', got 'poisson'"),
])
def test_config_error_lines(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert str(err.value).replace(str(tmp_path) + "/", "") == expected


def test_bad_yaml_names_line(tmp_path):
    with pytest.raises(ConfigError, match=r"cfg.yaml: line 3: expected the node content"):
        load_config(write(tmp_path, "model:\n  hidden: [1,\n"))


def test_cli_config_error_is_one_line_exit_2(tmp_path):
    path = write(tmp_path, "model:\n  kind: vae\n")
    result = run_cli("train", str(path), "--set", "model.latent_dims=3", "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"genmodels: error: {path} (with --set): unknown key 'model.latent_dims'; "
                     f"did you mean 'model.latent_dim'?"]
    assert "Traceback" not in result.stderr


def test_cli_missing_config_file(tmp_path):
    result = run_cli("train", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"genmodels: error: {tmp_path / 'nope.yaml'}: no such config file"
