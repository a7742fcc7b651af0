"""The one frozen configuration of a training run, validated before anything runs.

Every command-line flag of ``mnist_core.train`` maps 1:1 onto a field here (``--lr-schedule``
is ``lr_schedule``), so the resolved config saved in ``summary.json`` describes the run
completely and can be fed back to reproduce it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping, Optional, Tuple

from mnist_core.errors import VALUE_WORDS, ConfigError

DATASETS = ("mnist", "fashion_mnist", "synthetic")  # mnist_core's own; any TFDS name works too
# A TensorFlow Datasets name: ``kmnist``, ``emnist/letters``, ``cifar10:3.0.2``.
TFDS_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[a-z0-9_]+)?(:[0-9][0-9.*]*)?$")
OPTIMIZERS = ("adam", "rmsprop", "adadelta", "sgd")
LR_SCHEDULES = ("constant", "cosine", "exponential", "onecycle")
AUGMENT = ("off", "auto", "digits", "clothing")
STRATEGIES = ("default", "one_device", "mirrored", "multi_worker")
CLUSTERS = ("auto", "tf_config", "slurm")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
ON_NONFINITE = ("stop", "skip")
# The optimizer update: TensorFlow's fused kernels (mnist_core.fused), or Keras' own ops.
UPDATES = ("fused", "keras")
JIT_COMPILE = ("auto", "on", "off")
LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy")
PIXELS = ("unit", "raw")

# Their values are values, not words, when a message is put in a Python call's words.
VALUE_WORDS.update(DATASETS + OPTIMIZERS + LR_SCHEDULES + AUGMENT + STRATEGIES + CLUSTERS + PRECISIONS + ON_NONFINITE
                   + UPDATES + JIT_COMPILE + LOSSES + PIXELS)

# The learning rates of the tutorials this project replaces (Adadelta's 1.0 is the
# classic Keras CNN example's), used when --lr is not given.
DEFAULT_LEARNING_RATES = {"adam": 1e-3, "rmsprop": 1e-3, "adadelta": 1.0, "sgd": 1e-2}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    Attributes:
        dataset: ``mnist``, ``fashion_mnist``, ``synthetic`` (random images, for
            throughput runs only), or any TensorFlow Datasets image-classification name
            (``kmnist``, ``emnist/letters``, ``cifar10``...); with ``data_dir`` of CSV or
            image folders, the name the run gives its data.
        data_dir: Directory with the four IDX files (gzip or raw), a Keras ``mnist.npz``
            (or a directory holding one), or a TFDS data directory. ``None`` resolves it
            (see ``mnist_core.data.resolve``).
        model: A registered model name or ``package.module:Name``.
        optimizer: ``adam``, ``rmsprop``, ``adadelta`` or ``sgd`` (with momentum).
        lr: Initial learning rate; ``None`` takes the optimizer's tutorial default.
        lr_schedule: ``constant``, ``cosine`` (to 0 over the run) or ``exponential``.
        lr_decay_rate: Per-epoch decay factor of the ``exponential`` schedule.
        warmup_epochs: Linear learning-rate warm-up over this many epochs (0: none); with
            ``onecycle``, the length of its rising phase.
        weight_decay: Decoupled weight decay (AdamW-style; Keras' ``weight_decay``).
        clipnorm: Clip each gradient to this norm (0: off).
        global_clipnorm: Clip all gradients together to this global norm (0: off).
        ema: Keep an exponential moving average of the weights with this momentum (0:
            off); evaluation, ``model.keras`` and the SavedModel use the average.
        grad_accum_steps: Apply one update per this many batches (effective batch =
            ``grad_accum_steps * batch_size``); schedules count updates.
        label_smoothing: Smooth the training targets by this much (0: off).
        augment: Random shifts/rotations/zoom (``digits``) or shifts/flips/zoom
            (``clothing``) of training batches in the input pipeline, deterministic per
            seed and step; ``auto`` picks by dataset; never applied to evaluation.
        momentum: Momentum of ``sgd``.
        rho: ``rho`` of ``rmsprop``/``adadelta`` (``None``: Keras' default, 0.9 / 0.95).
        epsilon: The optimizer's ``epsilon`` (``None``: Keras' default, 1e-7).
        update: ``fused``: the optimizer updates each variable with one TensorFlow kernel
            (:mod:`mnist_core.fused`; equal to Keras' update up to float round-off);
            ``keras``: Keras' own element-wise update, bit for bit ``model.fit``'s.
        loss: ``sparse_categorical_crossentropy`` on class indices (the default) or
            ``categorical_crossentropy`` on one-hot targets, as the tutorials compile it
            (for a model ending in ``sigmoid``, Keras normalises the outputs to sum to one
            first). Either takes logits or probabilities, as the model returns them.
        pixels: How uint8 images are fed: ``unit`` (scaled to [0, 1], the default) or
            ``raw`` (the 0-255 values as floats, as some tutorials feed them).
        epochs: Number of passes over the training set.
        target_accuracy: Stop after the first epoch whose test accuracy reaches this
            (0: train all epochs).
        batch_size: Global batch size (summed over replicas).
        steps_per_loop: Training steps per compiled loop call; 0 (automatic) starts with
            a tenth of an epoch (at most 100) and, after the first timed call, makes calls
            of about half a second (at most an epoch; fixed under ``multi_worker``).
        eval_batch_size: Batch size of evaluation (it keeps no activations for a
            backward pass, so it can be larger than training's).
        eval_every: Evaluate every N epochs (the last epoch always).
        val_split: Fraction of the training set held out for validation; for data without
            a labelled test split (a CSV, one folder of class folders, ``(x, y)``), the
            fraction held out as its test split.
        class_weight: Weigh each training example's loss by its class, as ``fit``'s
            ``class_weight``: ``balanced`` (``n / (classes * count(class))``, as
            scikit-learn's) or ``"0:1,3:2.5"`` (class:weight pairs; classes not named weigh
            1). From Python a ``{class: weight}`` dict is taken too. ``None``: off.
        seed: Seed of weights, shuffling and dropout.
        jit_compile: ``auto`` (compile the step with XLA where timing both shows it is
            faster; see :mod:`mnist_core.autojit`), ``on`` or ``off``. ``True``/``False``
            are read as on/off.
        strategy: ``default``, ``one_device``, ``mirrored`` or ``multi_worker``.
        cpu_replicas: With no GPU, split the CPU into this many logical devices (0: off).
        devices: Comma-separated GPU indices for ``mirrored``/``one_device``.
        cluster: ``multi_worker``: where the workers are listed: ``tf_config``
            (``$TF_CONFIG``), ``slurm`` (a SLURM job step, ``srun``) or ``auto`` (TF_CONFIG
            if set, else a SLURM step).
        cluster_port: ``multi_worker`` under SLURM: the port of the first task on each node
            (``None``: derived from the job id).
        cluster_timeout: ``multi_worker``: seconds every worker waits for all the others
            to join at start-up.
        precision: ``float32``, ``mixed_float16`` or ``mixed_bfloat16``.
        sync_batchnorm: Synchronise BatchNormalization statistics across replicas.
        output_dir: Run directory; ``None`` makes ``runs/<timestamp>``.
        overwrite: Allow starting a fresh run in a non-empty output directory.
        resume: Resume from the output directory's latest checkpoint.
        checkpoint_every: Also checkpoint every N steps (0: only at epoch ends).
        keep_checkpoints: How many checkpoints to keep.
        deterministic: Enable TensorFlow op determinism (bitwise-reproducible on CPU).
        on_nonfinite: ``stop`` or ``skip`` a step whose loss is NaN/Inf (float32).
        quiet: Print only errors and the final result.
        export_savedmodel: Also export ``saved_model/``: a SavedModel whose serving
            signature takes uint8 ``[N, 28, 28]`` images (TF Serving, ``tf.saved_model.load``).
        export_h5: Also write ``model.h5`` (Keras' legacy HDF5 format) beside ``model.keras``.
        export_tflite: Also write ``model.tflite`` (:mod:`mnist_core.tflite`): ``float``,
            ``dynamic`` (int8 weights) or ``int8`` (weights and activations, calibrated on
            training images), checked by ``tf.lite.Interpreter`` against the Keras model;
            ``None``: no TFLite file.
        histograms: Write weight histograms to TensorBoard after every epoch.
        profile_steps: ``"A,B"``: write a TensorBoard profiler trace of global steps A..B
            (1-based, inclusive); ``None``: no profiling.
        synthetic_train_size: Number of training images of the ``synthetic`` dataset.
        callbacks: ``package.module:factory`` names of Keras callbacks to add (a
            ``Callback`` subclass or a function returning one or a list).
    """

    dataset: str = "mnist"
    data_dir: Optional[str] = None
    model: str = "cnn"
    optimizer: str = "adam"
    lr: Optional[float] = None
    lr_schedule: str = "constant"
    lr_decay_rate: float = 0.9
    warmup_epochs: float = 0.0
    weight_decay: float = 0.0
    clipnorm: float = 0.0
    global_clipnorm: float = 0.0
    ema: float = 0.0
    grad_accum_steps: int = 1
    label_smoothing: float = 0.0
    augment: str = "off"
    momentum: float = 0.9
    rho: Optional[float] = None
    epsilon: Optional[float] = None
    update: str = "fused"
    loss: str = "sparse_categorical_crossentropy"
    pixels: str = "unit"
    epochs: int = 5
    target_accuracy: float = 0.0
    batch_size: int = 128
    steps_per_loop: int = 0
    eval_batch_size: int = 1024
    eval_every: int = 1
    val_split: float = 0.0
    class_weight: Optional[str] = None
    seed: int = 42
    jit_compile: str = "auto"
    strategy: str = "default"
    cpu_replicas: int = 0
    devices: Optional[str] = None
    cluster: str = "auto"
    cluster_port: Optional[int] = None
    cluster_timeout: float = 600.0
    precision: str = "float32"
    sync_batchnorm: bool = False
    output_dir: Optional[str] = None
    overwrite: bool = False
    resume: bool = False
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    deterministic: bool = False
    on_nonfinite: str = "stop"
    quiet: bool = False
    export_savedmodel: bool = False
    export_h5: bool = False
    export_tflite: Optional[str] = None
    histograms: bool = False
    profile_steps: Optional[str] = None
    synthetic_train_size: int = 60000
    callbacks: Tuple[str, ...] = ()

    def __post_init__(self):
        from mnist_core.errors import from_python, python_words

        try:
            self._validate()
        except ConfigError as e:
            # TrainConfig(epochs=0) from Python names the field; the command line, the flag.
            if from_python():
                raise ConfigError(python_words(str(e))) from None
            raise

    def _validate(self):
        if isinstance(self.jit_compile, bool):  # earlier configs and TOML's true/false
            object.__setattr__(self, "jit_compile", "on" if self.jit_compile else "off")
        if isinstance(self.callbacks, str):
            object.__setattr__(self, "callbacks", (self.callbacks,))
        elif isinstance(self.callbacks, list):
            # JSON and TOML give lists; a frozen config holds a tuple.
            object.__setattr__(self, "callbacks", tuple(self.callbacks))
        if not isinstance(self.callbacks, tuple) or not all(isinstance(c, str) and c.strip() for c in self.callbacks):
            raise ConfigError(f"--callback must be package.module:factory names, got {self.callbacks!r}")
        if not isinstance(self.dataset, str) or not (self.dataset in DATASETS or TFDS_NAME.match(self.dataset)):
            raise ConfigError(f"--dataset must be one of {', '.join(DATASETS)} or a TensorFlow Datasets name "
                              f"(kmnist, emnist/letters, cifar10...); got {_flag_value(self.dataset)}")
        if isinstance(self.class_weight, Mapping):  # fit's form, from Python
            object.__setattr__(self, "class_weight", ",".join(f"{k}:{v}" for k, v in self.class_weight.items()))
        if self.class_weight is not None:
            self.class_weights  # validates
        _choice("--optimizer", self.optimizer, OPTIMIZERS)
        if self.export_tflite is not None:
            _choice("--export-tflite", self.export_tflite, ("float", "dynamic", "int8"))
        _choice("--lr-schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("--strategy", self.strategy, STRATEGIES)
        _choice("--cluster", self.cluster, CLUSTERS)
        _choice("--precision", self.precision, PRECISIONS)
        _choice("--on-nonfinite", self.on_nonfinite, ON_NONFINITE)
        _choice("--update", self.update, UPDATES)
        _choice("--jit-compile", self.jit_compile, JIT_COMPILE)
        _choice("--augment", self.augment, AUGMENT)
        _choice("--loss", self.loss, LOSSES)
        _choice("--pixels", self.pixels, PIXELS)
        for flag, value in (("--rho", self.rho), ("--epsilon", self.epsilon)):
            if value is not None and not (_finite(value) and value > 0):
                raise ConfigError(f"{flag} must be a positive number, got {value!r}")
        if self.rho is not None and self.optimizer not in ("rmsprop", "adadelta"):
            raise ConfigError(f"--rho applies to --optimizer rmsprop or adadelta, not {self.optimizer}")
        if self.epsilon is not None and self.optimizer == "sgd":
            raise ConfigError("--epsilon applies to --optimizer adam, rmsprop or adadelta, not sgd")
        _positive_int("--grad-accum-steps", self.grad_accum_steps)
        for flag, value in (("--weight-decay", self.weight_decay), ("--clipnorm", self.clipnorm),
                            ("--global-clipnorm", self.global_clipnorm), ("--warmup-epochs", self.warmup_epochs)):
            if not (_finite(value) and value >= 0):
                raise ConfigError(f"{flag} must be zero or a positive number, got {value!r}")
        if self.clipnorm and self.global_clipnorm:
            raise ConfigError("--clipnorm and --global-clipnorm cannot be used together (Keras applies one)")
        if not (_finite(self.ema) and (self.ema == 0 or 0 < self.ema < 1)):
            raise ConfigError(f"--ema must be a momentum in (0, 1) (or 0: off), got {self.ema!r}")
        if not (_finite(self.label_smoothing) and 0 <= self.label_smoothing < 1):
            raise ConfigError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.warmup_epochs and _finite(self.warmup_epochs) and self.warmup_epochs >= self.epochs:
            raise ConfigError(f"--warmup-epochs {self.warmup_epochs} must be shorter than the run "
                              f"(--epochs {self.epochs})")
        _positive_int("--epochs", self.epochs)
        _positive_int("--batch-size", self.batch_size)
        _positive_int("--keep-checkpoints", self.keep_checkpoints)
        _positive_int("--synthetic-train-size", self.synthetic_train_size)
        _positive_int("--eval-batch-size", self.eval_batch_size)
        _positive_int("--eval-every", self.eval_every)
        for flag, value in (
            ("--steps-per-loop", self.steps_per_loop),
            ("--cpu-replicas", self.cpu_replicas),
            ("--checkpoint-every", self.checkpoint_every),
        ):
            _non_negative_int(flag, value)
        _int("--seed", self.seed)
        for field in dataclasses.fields(self):
            if field.type in ("bool", bool) and not isinstance(getattr(self, field.name), bool):
                raise ConfigError(
                    f"--{field.name.replace('_', '-')} must be true or false, got {getattr(self, field.name)!r}"
                )
        if self.lr is not None and not (_finite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a positive number, got {self.lr!r}")
        if not (_finite(self.lr_decay_rate) and 0 < self.lr_decay_rate <= 1):
            raise ConfigError(f"--lr-decay-rate must be in (0, 1], got {self.lr_decay_rate!r}")
        if not (_finite(self.momentum) and 0 <= self.momentum < 1):
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum!r}")
        if not (_finite(self.target_accuracy) and 0 <= self.target_accuracy <= 1):
            raise ConfigError(f"--target-accuracy must be in [0, 1], got {self.target_accuracy!r}")
        if not (_finite(self.val_split) and 0 <= self.val_split < 1):
            raise ConfigError(f"--val-split must be in [0, 1), got {self.val_split!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("--model must be a model name or package.module:Name")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite cannot be used together")
        if self.resume and not self.output_dir:
            raise ConfigError("--resume needs --output-dir (the run directory to continue)")
        if self.devices is not None:
            parts = [p.strip() for p in str(self.devices).split(",")]
            if not parts or not all(p.isdigit() for p in parts):
                raise ConfigError(
                    f"--devices must be comma-separated GPU indices like 0,1, got {self.devices!r}"
                )
        if self.cpu_replicas and self.strategy != "mirrored":
            raise ConfigError("--cpu-replicas applies to --strategy mirrored only")
        if self.cluster_port is not None:
            _int("--cluster-port", self.cluster_port)
            if not 1 <= self.cluster_port <= 65535:
                raise ConfigError(f"--cluster-port must be a port number 1-65535, got {self.cluster_port}")
        if not (_finite(self.cluster_timeout) and self.cluster_timeout > 0):
            raise ConfigError(f"--cluster-timeout must be a positive number of seconds, got {self.cluster_timeout!r}")
        if self.strategy != "multi_worker":
            for flag, value, default in (("--cluster", self.cluster, "auto"), ("--cluster-port", self.cluster_port, None),
                                         ("--cluster-timeout", self.cluster_timeout, 600.0)):
                if value != default:
                    raise ConfigError(f"{flag} applies to --strategy multi_worker only")
        if self.profile_steps is not None:
            self.profile_range  # validates

    @property
    def profile_range(self) -> Optional[Tuple[int, int]]:
        """``profile_steps`` as ``(first, last)`` global steps, or ``None``."""
        if self.profile_steps is None:
            return None
        parts = str(self.profile_steps).split(",")
        try:
            first, last = (int(p) for p in parts)
        except ValueError:
            first = last = 0
        if len(parts) != 2 or not 1 <= first <= last:
            raise ConfigError(f"--profile-steps must be two step numbers A,B with 1 <= A <= B, "
                              f"got {self.profile_steps!r}")
        return first, last

    @property
    def class_weights(self):
        """``class_weight`` parsed: ``None``, ``"balanced"``, or ``{class: weight}``."""
        value = self.class_weight
        if value is None or value == "balanced":
            return value
        weights = {}
        try:
            for pair in str(value).split(","):
                key, weight = pair.split(":")
                weights[int(key)] = float(weight)
        except ValueError:
            weights = {}
        if not weights or not all(k >= 0 and math.isfinite(w) and w >= 0 for k, w in weights.items()):
            raise ConfigError(f"--class-weight must be balanced or class:weight pairs like 0:1,3:2.5 "
                              f"(classes 0 or more, weights finite and not negative); got {_flag_value(value)}")
        return weights

    @property
    def learning_rate(self) -> float:
        """The initial learning rate: ``lr`` or the optimizer's tutorial default."""
        return self.lr if self.lr is not None else DEFAULT_LEARNING_RATES[self.optimizer]

    def to_dict(self) -> dict:
        """Returns the config as plain JSON-serialisable values."""
        values = dataclasses.asdict(self)
        values["callbacks"] = list(self.callbacks)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Builds a config from a mapping, rejecting unknown keys by name."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown configuration key(s): {', '.join(unknown)}")
        return cls(**dict(values))

    def replace(self, **changes: Any) -> "TrainConfig":
        """Returns a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


def _flag_value(value: Any) -> str:
    return repr(value)


def _choice(flag: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{flag} must be one of {', '.join(choices)}; got {_flag_value(value)}")


def _int(flag: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{flag} must be an integer, got {_flag_value(value)}")


def _positive_int(flag: str, value: Any) -> None:
    _int(flag, value)
    if value <= 0:
        raise ConfigError(f"{flag} must be a positive integer, got {value}")


def _non_negative_int(flag: str, value: Any) -> None:
    _int(flag, value)
    if value < 0:
        raise ConfigError(f"{flag} must be zero or a positive integer, got {value}")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
