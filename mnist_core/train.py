"""``python -m mnist_core.train`` / ``mnist-train``: parse flags, build the config, train.

Only argument parsing lives here; the work is :func:`mnist_core.trainer.train`.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
from typing import Dict, List, Optional, Sequence

from mnist_core import cli
from mnist_core.config import (
    AUGMENT,
    CLUSTERS,
    DATASETS,
    JIT_COMPILE,
    LOSSES,
    LR_SCHEDULES,
    ON_NONFINITE,
    OPTIMIZERS,
    PIXELS,
    PRECISIONS,
    STRATEGIES,
    UPDATES,
    TrainConfig,
)
from mnist_core.errors import ConfigError, LostWorkerError, command_line_words

PROG = "mnist-train"
# Where and how a run writes, and which cluster runs it: chosen per command, never taken
# from a recorded run's config.
RUN_CONTROL = ("output_dir", "overwrite", "resume", "cluster", "cluster_port", "cluster_timeout")


def build_parser() -> argparse.ArgumentParser:
    """The training CLI. Every flag's ``dest`` is the TrainConfig field of the same name."""
    p = cli.ArgumentParser(
        prog=PROG,
        description="Train an MNIST-style classifier with mnist_core's compiled GradientTape loop.",
        argument_default=argparse.SUPPRESS,  # unset flags don't override config files/defaults
    )
    d = TrainConfig()
    p.add_argument("--config", dest="config_file", metavar="FILE",
                   help="read options from a TOML file (keys as the flags, e.g. batch_size = 256) or a run's "
                        "summary.json; flags given here override it")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", metavar="NAME",
                   help=f"{', '.join(DATASETS)}, or a TensorFlow Datasets image-classification name (kmnist, "
                        f"emnist/letters, cifar10...) (default {d.dataset})")
    g.add_argument("--data-dir", dest="data_dir", metavar="DIR",
                   help="IDX files, a Keras .npz, a CSV (label,pixel0,...) or train.csv, image folders per class, "
                        "or a TFDS data dir (default: resolved, see docs/data.md)")
    g.add_argument("--pixels", choices=PIXELS,
                   help="unit: pixels scaled to [0, 1] (default); raw: the 0-255 values as floats, as some "
                        "tutorials feed them")
    g.add_argument("--val-split", dest="val_split", type=float, metavar="F",
                   help="fraction of training data held out for validation, or as the test split of data that "
                        "has none (default 0)")
    g.add_argument("--class-weight", dest="class_weight", metavar="balanced|C:W,...",
                   help="weigh each example's loss by its class, as fit's class_weight: balanced, or pairs like "
                        "0:1,3:2.5 (default: off)")
    g.add_argument("--synthetic-train-size", dest="synthetic_train_size", type=cli.positive_int, metavar="N",
                   help=f"training images of --dataset synthetic (default {d.synthetic_train_size})")
    g = p.add_argument_group("model and optimisation")
    g.add_argument("--model", metavar="NAME|module:Name",
                   help=f"registered model or a keras.Model subclass/factory (default {d.model})")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help=f"optimizer (default {d.optimizer})")
    g.add_argument("--lr", type=float, help="learning rate (default: adam/rmsprop 1e-3, adadelta 1.0, sgd 1e-2)")
    g.add_argument("--lr-schedule", dest="lr_schedule", choices=LR_SCHEDULES,
                   help=f"learning-rate schedule (default {d.lr_schedule})")
    g.add_argument("--lr-decay-rate", dest="lr_decay_rate", type=float, metavar="R",
                   help=f"per-epoch factor of --lr-schedule exponential (default {d.lr_decay_rate})")
    g.add_argument("--momentum", type=float, help=f"momentum of sgd (default {d.momentum})")
    g.add_argument("--rho", type=float, help="rho of rmsprop/adadelta (default: Keras', 0.9 / 0.95)")
    g.add_argument("--epsilon", type=float, help="the optimizer's epsilon (default: Keras', 1e-7)")
    g.add_argument("--update", choices=UPDATES,
                   help=f"optimizer update: fused TensorFlow kernels, or keras (bit for bit model.fit's) "
                        f"(default {d.update})")
    g.add_argument("--loss", choices=LOSSES,
                   help="sparse_categorical_crossentropy (class indices, default) or categorical_crossentropy "
                        "(one-hot targets, as the tutorials compile it)")
    g.add_argument("--warmup-epochs", dest="warmup_epochs", type=float, metavar="E",
                   help="linear learning-rate warm-up over E epochs (default 0)")
    g.add_argument("--weight-decay", dest="weight_decay", type=float, metavar="W",
                   help="decoupled weight decay, AdamW-style (default 0)")
    g.add_argument("--clipnorm", type=float, metavar="C", help="clip each gradient to norm C (default off)")
    g.add_argument("--global-clipnorm", dest="global_clipnorm", type=float, metavar="C",
                   help="clip all gradients together to global norm C (default off)")
    g.add_argument("--ema", nargs="?", const=0.999, type=float, metavar="MOMENTUM",
                   help="exponential moving average of the weights, used for evaluation and the saved model "
                        "(default off; a bare --ema is 0.999)")
    g.add_argument("--grad-accum-steps", dest="grad_accum_steps", type=cli.positive_int, metavar="N",
                   help="one update per N batches: effective batch N x --batch-size (default 1)")
    g.add_argument("--label-smoothing", dest="label_smoothing", type=float, metavar="E",
                   help="smooth the training targets by E (default 0)")
    g.add_argument("--augment", nargs="?", const="auto", choices=AUGMENT,
                   help="random shifts/rotations/zoom of training images: digits, clothing, or auto (by dataset; "
                        "a bare --augment); default off")
    g.add_argument("--epochs", type=cli.positive_int, help=f"epochs (default {d.epochs})")
    g.add_argument("--target-accuracy", dest="target_accuracy", type=float, metavar="A",
                   help="stop after the first epoch whose test accuracy is at least A (default: all epochs)")
    g.add_argument("--batch-size", dest="batch_size", type=cli.positive_int,
                   help=f"global batch size (default {d.batch_size})")
    g.add_argument("--seed", type=int, help=f"random seed (default {d.seed})")
    g = p.add_argument_group("execution")
    g.add_argument("--steps-per-loop", dest="steps_per_loop", type=cli.non_negative_int, metavar="N",
                   help="steps per compiled loop call (default 0: ~1/10 epoch, at most 100)")
    g.add_argument("--jit-compile", dest="jit_compile", nargs="?", const="on", choices=JIT_COMPILE,
                   help="XLA: auto (default: on where timing shows it is faster, decided once per machine and "
                        "model), on (also a bare --jit-compile) or off")
    g.add_argument("--eval-batch-size", dest="eval_batch_size", type=cli.positive_int, metavar="N",
                   help=f"batch size of evaluation (default {d.eval_batch_size})")
    g.add_argument("--eval-every", dest="eval_every", type=cli.positive_int, metavar="N",
                   help="evaluate every N epochs; the last epoch always (default 1)")
    g.add_argument("--strategy", choices=STRATEGIES, help=f"tf.distribute strategy (default {d.strategy})")
    g.add_argument("--cpu-replicas", dest="cpu_replicas", type=cli.non_negative_int, metavar="N",
                   help="with no GPU: split the CPU into N logical devices for --strategy mirrored")
    g.add_argument("--devices", metavar="LIST", help="GPU indices to use, e.g. 0,1")
    g.add_argument("--cluster", choices=CLUSTERS,
                   help="multi_worker: read the workers from tf_config ($TF_CONFIG), slurm (a SLURM job step) or "
                        "auto (default: TF_CONFIG if set, else SLURM)")
    g.add_argument("--cluster-port", dest="cluster_port", type=cli.positive_int, metavar="PORT",
                   help="multi_worker under SLURM: port of each node's first task (default: from the job id)")
    g.add_argument("--cluster-timeout", dest="cluster_timeout", type=float, metavar="SECONDS",
                   help=f"multi_worker: how long every worker waits for the others to join (default {d.cluster_timeout:g})")
    g.add_argument("--precision", choices=PRECISIONS, help=f"numeric precision (default {d.precision})")
    g.add_argument("--sync-batchnorm", dest="sync_batchnorm", action="store_true",
                   help="synchronise BatchNormalization statistics across replicas")
    g.add_argument("--deterministic", action="store_true", help="enable TensorFlow op determinism")
    g.add_argument("--on-nonfinite", dest="on_nonfinite", choices=ON_NONFINITE,
                   help=f"what a NaN/Inf loss does in float32 (default {d.on_nonfinite})")
    g = p.add_argument_group("output")
    g.add_argument("--output-dir", dest="output_dir", metavar="DIR", help="run directory (default runs/<timestamp>)")
    g.add_argument("--overwrite", action="store_true", help="replace an earlier run in --output-dir")
    g.add_argument("--resume", action="store_true", help="continue from --output-dir's latest checkpoint")
    g.add_argument("--checkpoint-every", dest="checkpoint_every", type=cli.non_negative_int, metavar="N",
                   help="also checkpoint every N steps (default: at epoch ends only)")
    g.add_argument("--keep-checkpoints", dest="keep_checkpoints", type=cli.positive_int, metavar="K",
                   help=f"checkpoints kept (default {d.keep_checkpoints})")
    g.add_argument("--export-savedmodel", dest="export_savedmodel", action="store_true",
                   help="also write OUTPUT_DIR/saved_model: a SavedModel serving uint8 [N,28,28] images")
    g.add_argument("--export-tflite", dest="export_tflite", choices=("float", "dynamic", "int8"),
                   help="also write OUTPUT_DIR/model.tflite: float, dynamic (int8 weights) or int8 (weights and "
                        "activations, calibrated on training images), checked against the Keras model")
    g.add_argument("--export-h5", dest="export_h5", action="store_true",
                   help="also write OUTPUT_DIR/model.h5 (Keras' legacy HDF5 format)")
    g.add_argument("--histograms", action="store_true", help="write weight histograms to TensorBoard every epoch")
    g.add_argument("--profile-steps", dest="profile_steps", metavar="A,B",
                   help="write a TensorBoard profiler trace of global steps A to B (e.g. 20,40)")
    g.add_argument("--callback", dest="callbacks", action="append", metavar="module:factory",
                   help="add a Keras callback: a Callback subclass or a function returning one (repeatable)")
    g.add_argument("--quiet", action="store_true", help="print only errors and the final result")
    return p


def read_config_file(path: str) -> Dict:
    """Options from a TOML file, a built-in recipe, or the resolved ``config`` of a run's
    summary.json (without :data:`RUN_CONTROL`: a reproduction writes where it is told).

    Keys are TrainConfig fields; dashes are accepted for underscores (``batch-size``). A
    ``[recipe]`` table describes a recipe and sets nothing (see :mod:`mnist_core.recipes`);
    ``recipes/NAME.toml`` or ``NAME`` names a built-in recipe when no such file exists.

    Raises:
        ConfigError: the file is missing or unreadable, does not parse, or is not a table.
    """
    import json

    from mnist_core import recipes

    flag = f"--config {path}"
    path = recipes.resolve(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"{flag}: cannot read ({e.strerror or e})") from None
    if path.endswith(".json"):
        try:
            values = json.loads(raw)
        except ValueError as e:
            raise ConfigError(f"{flag}: not valid JSON ({e})") from None
        if isinstance(values, dict) and isinstance(values.get("config"), dict):
            # A run's summary.json (or config.json): reproduce that run — its settings, never
            # where it wrote or how (output_dir, overwrite, resume belong to that run alone:
            # carried over, they would retrain into, or over, its directory).
            values = {key: value for key, value in values["config"].items() if key not in RUN_CONTROL}
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise ConfigError(f"{flag}: TOML needs Python 3.11+ (tomllib); use a .json file instead") from None
        try:
            values = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{flag}: not valid TOML ({e})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{flag}: expected a table of options")
    values, _ = recipes.split(values, flag)
    # JSON null (None) means "the default" there; TOML has no null at all.
    return {key.replace("-", "_"): value for key, value in values.items() if value is not None}


def config_from_args(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    """Parses ``argv`` (and its ``--config`` file) into a validated :class:`TrainConfig`.

    Flags override the file; exits 2 on bad flags, raises ConfigError on a bad file (both
    named as flags).
    """
    with command_line_words():
        return _config_from_args(argv)


def _config_from_args(argv: Optional[Sequence[str]]) -> TrainConfig:
    args = build_parser().parse_args(argv)
    values: Dict = vars(args)
    path = values.pop("config_file", None)
    if path is None:
        return TrainConfig.from_dict(values)
    from_file = read_config_file(path)
    try:
        return TrainConfig.from_dict({**from_file, **values})
    except ConfigError as e:
        raise ConfigError(f"--config {path}: {e}") from None


def restart_command(argv: Sequence[str], flag: str) -> str:
    """The command that starts this worker again with ``flag`` (``--resume`` or ``--overwrite``)
    in place of either (``""``: as it was), quoted for this platform's shell."""
    import shlex
    import subprocess

    kept = [a for a in argv if a not in ("--resume", "--overwrite")] if flag else list(argv)
    command = ["python", "-m", "mnist_core.train", *kept, *([flag] if flag else [])]
    return subprocess.list2cmdline(command) if os.name == "nt" else shlex.join(command)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``mnist-train``."""
    cli.quiet_tensorflow_logs()

    def body():
        config = config_from_args(argv)
        cli.import_tensorflow()  # after the flags are checked, without its start-up noise
        from mnist_core import trainer

        try:
            trainer.train(config)
        except LostWorkerError as e:
            e.command = restart_command(sys.argv[1:] if argv is None else argv, e.restart_flag)
            raise
        if config.strategy == "multi_worker":
            cli.finish_at_once()

    return cli.run_main(PROG, body, argv)


class _CallableModule(types.ModuleType):
    """This module, callable as :func:`mnist_core.trainer.train`.

    ``mnist_core.train`` names both the Python API's function and this command-line
    module; once this module is imported (``python -m``, ``from mnist_core.train import
    config_from_args``), Python's import system makes ``mnist_core.train`` the module. A
    call ``mnist_core.train(config, ...)`` then still trains, whatever was imported first.
    """

    def __call__(self, *args, **kwargs):
        from mnist_core import trainer

        return trainer.train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


if __name__ == "__main__":
    sys.exit(main())
