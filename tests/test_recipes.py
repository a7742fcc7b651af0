"""Named recipes (``--config recipes/NAME.toml``) and their listing. The recipes' accuracy
and time-to-accuracy are benchmarks (``python -m benchmarks.run --suite tta``), not tests."""

import json

import pytest

from conftest import error_lines, run_cli
from mnist_core import recipes
from mnist_core.errors import ConfigError
from mnist_core.train import config_from_args

DATASET_OF = {"mnist-5k": "mnist", "fashion-mnist": "fashion_mnist"}


@pytest.mark.parametrize("name", recipes.names())
def test_every_recipe_is_a_valid_config_with_its_description(name):
    recipe = recipes.get(name)
    config = config_from_args(["--config", f"recipes/{name}.toml"])
    # Every option the file sets reaches the config (none is silently dropped).
    for key, value in recipe.options.items():
        assert getattr(config, key) == value, key
    meta = recipe.meta
    assert meta["kind"] in ("tutorial", "fast") and meta["description"]
    assert DATASET_OF[meta["data"]] == config.dataset
    if meta["kind"] == "fast":
        assert 0.5 < meta["target"] < 1
    if "result" in meta:  # measured: says on what
        assert meta["measured_on"] and meta["command"].startswith("python -m mnist_core.train --config")


def test_the_required_recipes_exist():
    tutorial = {r.meta["script"]: r.options["model"] for r in recipes.all_recipes("tutorial")}
    assert tutorial == {"000": "linear_mlp_softmax", "001a": "mlp32_softmax", "001b": "cnn_softmax",
                        "002a": "mlp15_softmax", "002b": "mlp_l1_softmax", "002c": "lenet_softmax",
                        "003a": "mlp15_sigmoid", "003b": "mlp_l2_softmax", "004": "deep_mlp_softmax"}
    fast = {(r.meta["data"], "gpu" in r.name) for r in recipes.all_recipes("fast")}
    assert fast == {("mnist-5k", False), ("mnist-5k", True), ("fashion-mnist", False), ("fashion-mnist", True)}


def test_names_resolve_to_built_ins_and_a_users_file_wins(tmp_path, monkeypatch):
    assert config_from_args(["--config", "fast-mnist-cpu"]).model == "lenet"
    assert config_from_args(["--config", "fast-mnist-cpu.toml"]).model == "lenet"
    # Flags override the recipe.
    config = config_from_args(["--config", "recipes/fast-mnist-cpu.toml", "--epochs", "3", "--augment", "off"])
    assert (config.epochs, config.augment, config.label_smoothing) == (3, "off", 0.1)
    # A file that exists where the user runs is theirs, even under recipes/.
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "fast-mnist-cpu.toml").write_text('model = "mlp"\nepochs = 2\n')
    monkeypatch.chdir(tmp_path)
    assert (config_from_args(["--config", "recipes/fast-mnist-cpu.toml"]).model,
            config_from_args(["--config", "recipes/fast-mnist-cpu.toml"]).epochs) == ("mlp", 2)
    with pytest.raises(ConfigError, match="--config nope.toml: cannot read"):
        config_from_args(["--config", "nope.toml"])


def test_an_option_under_the_recipe_table_is_refused_not_ignored(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('model = "mlp"\n\n[recipe]\nkind = "fast"\nepochs = 3\n')
    result = run_cli("mnist_core.train", "--config", str(path), "--dataset", "synthetic", "--output-dir",
                     str(tmp_path / "run"))
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        f"mnist-train: error: --config {path}: [recipe] describes a recipe and sets no options; unknown "
        f"key(s) epochs (allowed: {', '.join(recipes.META_KEYS)}; put options above [recipe])"]
    assert not (tmp_path / "run").exists()
    path.write_text('model = "mlp"\nrecipe = "fast"\n')
    with pytest.raises(ConfigError, match="'recipe' must be a \\[recipe\\] table"):
        config_from_args(["--config", str(path)])


def test_listing_shows_every_recipe_with_what_it_measured():
    result = run_cli("mnist_core.recipes")
    assert result.returncode == 0 and result.stderr == ""
    for recipe in recipes.all_recipes():
        line = next(line for line in result.stdout.splitlines() if f" {recipe.name} " in line)
        assert recipe.meta["kind"] in line and recipe.meta["data"] in line
        assert recipe.meta.get("result", "not measured")[:20] in result.stdout
    shown = run_cli("mnist_core.recipes", "--show", "tutorial-001b")
    assert shown.returncode == 0 and shown.stdout == recipes.get("tutorial-001b").path.read_text()
    bad = run_cli("mnist_core.recipes", "--show", "nope")
    assert bad.returncode == 2
    assert error_lines(bad.stderr) == [
        f"mnist_core.recipes: error: recipe 'nope': unknown; choose one of {', '.join(recipes.names())}"]


def test_a_recipe_trains_with_every_technique_it_names(tmp_path, idx_dir):
    """The fast MNIST recipe, shortened to 2 epochs on tiny data: the run's recorded config
    is the recipe's, and its techniques show in what the run did."""
    out = tmp_path / "run"
    result = run_cli("mnist_core.train", "--config", "recipes/fast-mnist-cpu.toml", "--data-dir", str(idx_dir),
                     "--epochs", "2", "--jit-compile", "off", "--output-dir", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    expected = dict(recipes.get("fast-mnist-cpu").options, epochs=2, jit_compile="off")
    assert {k: summary["config"][k] for k in expected} == expected
    history = json.loads((out / "history.json").read_text())
    # A schedule is in force: one-cycle ends the run at the bottom of its cycle, below the
    # rate after epoch 1 (a constant rate would keep it).
    rates = [e["learning_rate"] for e in history]
    assert rates[1] < rates[0] < 0.003
    # eval_every 2: epoch 1 not evaluated, the last always
    assert "test_accuracy" not in history[0] and "test_accuracy" in history[1]
