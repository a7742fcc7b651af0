import re

import pytest

from mnist_core.config import TrainConfig
from mnist_core.errors import ConfigError, command_line_words


@pytest.mark.parametrize(
    "changes, flag",
    [
        ({"epochs": 0}, "--epochs"),
        ({"epochs": -3}, "--epochs"),
        ({"batch_size": 0}, "--batch-size"),
        ({"optimizer": "adamw"}, "--optimizer"),
        ({"dataset": "Not a dataset!"}, "--dataset"),
        ({"strategy": "tpu"}, "--strategy"),
        ({"precision": "float16"}, "--precision"),
        ({"lr": 0.0}, "--lr"),
        ({"lr": float("nan")}, "--lr"),
        ({"val_split": 1.0}, "--val-split"),
        ({"momentum": 1.0}, "--momentum"),
        ({"steps_per_loop": -1}, "--steps-per-loop"),
        ({"devices": "0,x"}, "--devices"),
        ({"lr_schedule": "step"}, "--lr-schedule"),
        ({"cpu_replicas": 2}, "--cpu-replicas"),
        ({"profile_steps": "5"}, "--profile-steps"),
        ({"profile_steps": "5,3"}, "--profile-steps"),
        ({"profile_steps": "0,3"}, "--profile-steps"),
        ({"profile_steps": "a,b"}, "--profile-steps"),
        ({"export_savedmodel": "yes"}, "--export-savedmodel"),
    ],
)
def test_invalid_values_name_the_flag(changes, flag):
    """From Python the field is named as an argument; from the command line, as its flag."""
    with pytest.raises(ConfigError, match=flag.lstrip("-").replace("-", "_")) as raised:
        TrainConfig(**changes)
    assert "--" not in str(raised.value)
    with command_line_words(), pytest.raises(ConfigError, match=flag):
        TrainConfig(**changes)


def test_profile_steps_range():
    assert TrainConfig(profile_steps="20,40").profile_range == (20, 40)
    assert TrainConfig(profile_steps="7,7").profile_range == (7, 7)
    assert TrainConfig().profile_range is None


def test_resume_and_overwrite_are_exclusive():
    with pytest.raises(ConfigError, match="resume and overwrite"):
        TrainConfig(resume=True, overwrite=True)


def test_learning_rate_defaults_follow_the_tutorials():
    assert TrainConfig(optimizer="adadelta").learning_rate == 1.0
    assert TrainConfig(optimizer="adam").learning_rate == 1e-3
    assert TrainConfig(optimizer="sgd", lr=0.5).learning_rate == 0.5


def test_round_trip_and_unknown_keys():
    config = TrainConfig(model="lenet", epochs=3, lr=0.01)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown configuration key.*bogus"):
        TrainConfig.from_dict({"bogus": 1})


def test_config_is_frozen():
    with pytest.raises(Exception):
        TrainConfig().epochs = 3  # type: ignore[misc]


def test_config_file_with_flag_overrides(tmp_path):
    from mnist_core.train import config_from_args

    path = tmp_path / "run.toml"
    path.write_text('model = "lenet"\nepochs = 7\nbatch-size = 256\njit_compile = true\n')
    config = config_from_args(["--config", str(path), "--epochs", "2"])
    assert (config.model, config.epochs, config.batch_size, config.jit_compile) == ("lenet", 2, 256, "on")


def test_summary_config_feeds_back(tmp_path):
    import json

    from mnist_core.train import config_from_args

    original = TrainConfig(model="deep_mlp", epochs=3, lr=0.01, optimizer="sgd", output_dir=str(tmp_path / "r"),
                           overwrite=True)
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"test_accuracy": 0.9, "config": original.to_dict()}))
    # The run's settings, never where or how it wrote: a reproduction writes where it is told.
    assert config_from_args(["--config", str(path)]) == original.replace(output_dir=None, overwrite=False)
    assert config_from_args(["--config", str(path), "--output-dir", "other"]).output_dir == "other"
    resumed = original.replace(overwrite=False, resume=True)
    path.write_text(json.dumps({"config": resumed.to_dict()}))
    assert config_from_args(["--config", str(path)]).resume is False


@pytest.mark.parametrize("text, message", [
    ("epochs = [", "not valid TOML"),
    ('epochs = "3"', "--epochs must be an integer"),
    ("jit_compile = 1", "--jit-compile must be one of auto, on, off; got 1"),
    ("batchsize = 3", "unknown configuration key(s): batchsize"),
])
def test_bad_config_file_names_file_and_problem(tmp_path, text, message):
    from mnist_core.train import config_from_args

    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^--config {re.escape(str(path))}: .*{re.escape(message)}"):
        config_from_args(["--config", str(path)])
    with pytest.raises(ConfigError, match="--config .*missing.toml: cannot read"):
        config_from_args(["--config", str(tmp_path / "missing.toml")])
