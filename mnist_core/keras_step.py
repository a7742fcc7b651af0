"""Layer 1 for models that bring their own step: Keras' model protocol in the compiled loop.

Keras teaches one way to customise training ("customizing what happens in ``fit``"): a
``keras.Model`` subclass overrides ``train_step``, ``test_step``, ``compute_loss`` or
``compute_metrics``. A model that does is trained here through those methods, called
exactly as Keras' own TensorFlow trainer calls them: the model is compiled (the run's
optimizer, ``SparseCategoricalCrossentropy(from_logits=True)``, ``accuracy``), its metric
state is built before tracing, each replica runs ``model.train_step(batch)`` inside
``strategy.run`` without AutoGraph, and the logs are reduced across replicas as ``fit``
reduces them. A model that overrides none of them keeps mnist_core's explicit step
(:mod:`mnist_core.step`), which is bitwise ``model.fit``'s update and a little faster.

XLA: on one replica the user's ``train_step`` is compiled whole, optimizer update
included, as ``fit(jit_compile=True)`` compiles it. Under several replicas an optimizer
update is a cross-replica all-reduce that cannot run inside an XLA cluster, so a model
overriding ``train_step`` (which applies its gradients itself) is refused there, while
``compute_loss``/``compute_metrics`` overrides run a transcription of Keras' own
``train_step`` split like mnist_core's step: forward and backward under XLA, the update
outside.
"""

from __future__ import annotations

import inspect
from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from mnist_core.errors import ConfigError, ModelError, brief

PROTOCOL_METHODS = ("train_step", "test_step", "compute_loss", "compute_metrics")


def overridden_methods(model) -> Tuple[str, ...]:
    """The Keras protocol methods that ``model``'s class overrides (in protocol order)."""
    import keras

    cls = type(model)
    return tuple(name for name in PROTOCOL_METHODS if getattr(cls, name, None) is not getattr(keras.Model, name))


# Set on a model that mnist_core compiled, so that a second run on the same object (the
# notebook pattern: train, look, train again) knows the compile is its own to replace.
COMPILED_BY_MNIST_CORE = "_mnist_core_compiled"


def compiled_by_mnist_core(model) -> bool:
    """Whether ``model``'s compile is an earlier mnist_core run's, not the user's."""
    return bool(getattr(model, "compiled", False) and model.__dict__.get(COMPILED_BY_MNIST_CORE))


class _NativeCompileConfig:
    """The compile config a model trained by mnist_core saves: plain Keras objects only.

    Keras records a model's compile arguments and writes them into every ``.keras`` file
    the model is saved to (a callback's ``model.save()``, ``ModelCheckpoint``, the user's
    own save after training). mnist_core's optimizer wrapper, learning-rate schedules and
    smoothed loss are not Keras' classes, so ``keras.models.load_model`` would fail on them
    wherever mnist_core is not imported; this records their Keras twins instead
    (:func:`mnist_core.optim.native_twin`, :func:`mnist_core.losses.native_twin`), worked
    out when the model is saved.
    """

    def __init__(self, original):
        self.config = original.config

    def serialize(self):
        from keras.src.saving import serialization_lib

        from mnist_core import losses, optim

        config = dict(self.config, optimizer=optim.native_twin(self.config["optimizer"]),
                      loss=losses.native_twin(self.config["loss"]))
        return serialization_lib.serialize_keras_object(config)


def compiled_by_user(model) -> bool:
    """Whether ``model`` arrives compiled by the user (the tutorials' ``model.compile(...)``)."""
    return bool(getattr(model, "compiled", False)) and not compiled_by_mnist_core(model)


def label_format(loss) -> str:
    """``sparse`` (class indices) or ``one_hot`` targets, as a compiled ``loss`` expects them.

    A loss named sparse (``sparse_categorical_crossentropy``,
    ``SparseCategoricalCrossentropy``, mnist_core's smoothed one) takes indices; any other
    (``categorical_crossentropy`` on ``to_categorical`` labels, ``mse``...) one-hot rows, as
    the tutorials feed it. No compiled loss (a ``train_step`` computing its own): indices.
    """
    from mnist_core.losses import SmoothedSparseCategoricalCrossentropy

    if loss is None or isinstance(loss, SmoothedSparseCategoricalCrossentropy):
        return "sparse"
    if isinstance(loss, str):
        name = loss
    else:
        fn = getattr(loss, "fn", None)  # LossFunctionWrapper
        name = f"{type(loss).__name__} {getattr(fn, '__name__', '')} {getattr(loss, '__name__', '')}"
    return "sparse" if "sparse" in name.lower() else "one_hot"


# Flags that make or change the optimizer or the loss, with their defaults: a model that
# arrives compiled brings both, so any of these set to something else is refused.
_OPTIMIZER_AND_LOSS_FLAGS = (("optimizer", "adam"), ("lr", None), ("lr_schedule", "constant"), ("momentum", 0.9),
                             ("rho", None), ("epsilon", None), ("warmup_epochs", 0.0), ("weight_decay", 0.0),
                             ("clipnorm", 0.0), ("global_clipnorm", 0.0), ("ema", 0.0), ("grad_accum_steps", 1),
                             ("label_smoothing", 0.0), ("on_nonfinite", "stop"),
                             ("loss", "sparse_categorical_crossentropy"))


def other_optimizers(model) -> Dict[str, object]:
    """The optimizers a model keeps besides ``model.optimizer``, by attribute name.

    A GAN compiled as Keras' guide compiles it (``compile(d_optimizer, g_optimizer,
    loss_fn)``) keeps one per network in attributes of its own; its ``train_step`` applies
    each. mnist_core builds them before tracing and checkpoints them with the model.
    """
    import keras

    found = {}
    for name, value in sorted(vars(model).items()):
        if name != "optimizer" and isinstance(value, keras.optimizers.Optimizer) \
                and value is not getattr(model, "optimizer", None):
            found[name] = value
    return found


def describe_compile(model) -> str:
    """``RMSprop, loss categorical_crossentropy, metrics accuracy``: what a user compiled
    (``d_optimizer Adam, g_optimizer Adam`` for a model with optimizers of its own)."""
    others = other_optimizers(model)
    if others:
        parts = [f"{name} {type(opt).__name__}" for name, opt in others.items()]
    else:
        parts = [type(getattr(model, "optimizer", None)).__name__]
    if model.loss is not None:
        loss = model.loss if isinstance(model.loss, str) else getattr(getattr(model.loss, "fn", None), "__name__",
                                                                      type(model.loss).__name__)
        parts.append(f"loss {loss}")
    metrics = model._compile_config.config.get("metrics") if hasattr(model, "_compile_config") else None
    names = [m if isinstance(m, str) else getattr(m, "name", type(m).__name__) for m in (metrics or [])]
    if names:
        parts.append(f"metrics {', '.join(names)}")
    return ", ".join(parts)


def check_user_compile(model, config, where: str) -> None:
    """Refuses the flags a model compiled by the user cannot honour, in one line each.

    The model brings its optimizer, loss and metrics, as under ``fit``; flags that would
    make another optimizer or loss, ``run_eagerly=True`` (mnist_core's loop is compiled),
    and a model with several compiled losses are refused. ``steps_per_execution`` given to
    ``compile`` is taken where ``--steps-per-loop`` is left at its default.

    Raises:
        ConfigError: naming the flag and what to drop.
    """
    what = describe_compile(model)
    for field, default in _OPTIMIZER_AND_LOSS_FLAGS:
        value = getattr(config, field)
        if value != default:
            flag = "--" + field.replace("_", "-")
            raise ConfigError(
                f"{flag} {value}: {where} comes compiled ({what}) and is trained with its own optimizer and loss, "
                f"as fit would; drop {flag}, or pass the model uncompiled to train it with mnist_core's")
    if getattr(model, "run_eagerly", False):
        raise ConfigError(f"{where} was compiled with run_eagerly=True; mnist_core's loop is a compiled tf.function: "
                          "compile it without run_eagerly")
    if isinstance(model.loss, (list, tuple, dict)):
        raise ConfigError(f"{where} was compiled with several losses; mnist_core trains one output with one loss")


def compiled_steps_per_execution(model) -> int:
    """The ``steps_per_execution`` a user gave ``compile`` (1 when not given).

    (``compile``'s ``jit_compile`` cannot be told apart from Keras' own resolution of its
    default ``"auto"``, which Keras does at compile time; XLA is ``--jit-compile``'s choice.)
    """
    return int(getattr(model, "steps_per_execution", 1) or 1)


def compile_model(model, optimizer, input_shape: Sequence[int], where: str, label_smoothing: float = 0.0,
                  from_logits: bool = True, categorical: bool = False, num_classes: int = 10) -> bool:
    """Compiles ``model`` as the tutorial recipe does and builds its metric state.

    The loss is cross-entropy of the model's kind of outputs (``from_logits``) on indices,
    or on one-hot targets with ``categorical`` (``categorical_crossentropy``, as the
    tutorials compile it); ``accuracy`` is the metric. Call inside the strategy's scope:
    the metric variables are created here, as ``fit`` creates them before its first trace
    (``Trainer._symbolic_build``), not inside a replica's graph.

    Returns:
        Whether the model had been compiled by an earlier mnist_core run (trained again:
        its weights continue, with this run's optimizer).
    """
    import keras

    from mnist_core.losses import SmoothedSparseCategoricalCrossentropy

    again = compiled_by_mnist_core(model)
    if categorical:
        loss = keras.losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing)
    elif label_smoothing:
        loss = SmoothedSparseCategoricalCrossentropy(label_smoothing, from_logits=from_logits)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=False)
    model._compile_config = _NativeCompileConfig(model._compile_config)
    object.__setattr__(model, COMPILED_BY_MNIST_CORE, True)
    build_metrics(model, input_shape, where, num_classes)
    return again


def compile_own_step_model(model, optimizer, where: str) -> bool:
    """Compiles a model that trains itself and is not a classifier (a VAE): the run's
    optimizer only, as Keras' guide compiles it (``vae.compile(optimizer=...)``); its
    ``train_step`` computes its own losses and reports its own trackers.

    Returns:
        Whether an earlier mnist_core run had compiled it (trained again).

    Raises:
        ModelError: the model's own ``compile`` takes other arguments (a GAN's
            ``compile(d_optimizer, g_optimizer, loss_fn)``): it must arrive compiled.
    """
    again = compiled_by_mnist_core(model)
    try:
        model.compile(optimizer=optimizer, jit_compile=False)
    except TypeError as e:
        raise ModelError(
            f"{where}: its compile() takes its own arguments ({brief(e, 160)}); compile it yourself before "
            "training (in the factory, as Keras' guide does before fit): mnist_core then trains it with what it "
            "was compiled with") from None
    model._compile_config = _NativeCompileConfig(model._compile_config)
    object.__setattr__(model, COMPILED_BY_MNIST_CORE, True)
    return again


def build_metrics(model, input_shape: Sequence[int], where: str, num_classes: int = 10) -> None:
    """Builds a compiled model's loss and metric state on a batch of zeros, as ``fit`` does first.

    Raises:
        ModelError: the compiled loss or metrics cannot take the model's outputs.
    """
    one_hot = label_format(model.loss) == "one_hot"
    labels = np.zeros((2, num_classes), np.float32) if one_hot else np.zeros((2,), np.int32)
    batch = (np.zeros((2, *input_shape), np.float32), labels)
    try:
        model._symbolic_build(data_batch=batch)
    except Exception as e:
        raise ModelError(f"{where}: building the model's loss and metrics failed "
                         f"({type(e).__name__}: {brief(e, 300)})") from None


def _call_compute_loss(model, x, y, y_pred, training: bool, sample_weight=None):
    # Keras' own compatibility rule (Trainer._compute_loss): overrides written before
    # Keras 3.3 have no ``training`` argument.
    if "training" in inspect.signature(model.compute_loss).parameters:
        return model.compute_loss(x, y, y_pred, sample_weight, training=training)
    return model.compute_loss(x, y, y_pred, sample_weight)


def make_train_step(model, optimizer, *, jit_compile: bool, num_replicas: int, where: str) -> Callable:
    """The per-replica Keras-protocol training step: ``data -> logs``.

    Raises:
        ConfigError: ``--jit-compile`` with a ``train_step`` override on several replicas.
    """
    import tensorflow as tf

    overrides = overridden_methods(model)
    if "train_step" in overrides or not (jit_compile and num_replicas > 1):
        if jit_compile and num_replicas > 1:
            raise ConfigError(
                f"--jit-compile: {where} overrides train_step, which applies its gradients itself; under "
                f"{num_replicas} replicas that update is a cross-replica all-reduce, which cannot run inside "
                "an XLA cluster (model.fit turns XLA off under tf.distribute for the same reason); drop "
                "--jit-compile, or override compute_loss instead of train_step"
            )

        def train_step(data):
            return model.train_step(data)

        if jit_compile:
            train_step = tf.function(train_step, jit_compile=True, reduce_retracing=True, autograph=False)
        return train_step

    # compute_loss / compute_metrics overrides, XLA under several replicas: Keras'
    # TensorFlowTrainer.train_step, transcribed, with its update moved out of XLA.
    from keras.src.losses import loss as loss_module

    def forward_backward(x, y, sample_weight):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True) if model._call_has_training_arg else model(x)
            loss = _call_compute_loss(model, x, y, y_pred, training=True, sample_weight=sample_weight)
            model._loss_tracker.update_state(loss_module.unscale_loss_for_distribution(loss),
                                             sample_weight=tf.shape(x)[0])
            scaled = optimizer.scale_loss(loss)
        return y_pred, tape.gradient(scaled, model.trainable_weights)

    compiled = tf.function(forward_backward, jit_compile=True, reduce_retracing=True, autograph=False)

    def split_train_step(data):
        import keras

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred, gradients = compiled(x, y, sample_weight)
        optimizer.apply_gradients(zip(gradients, model.trainable_weights))
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    return split_train_step


def make_test_step(model, *, jit_compile: bool = False) -> Callable:
    """The per-replica Keras-protocol evaluation step: ``data -> logs`` (XLA-compiled on request,
    as ``fit`` compiles ``test_step`` with ``jit_compile=True``: it has no cross-replica update)."""
    import tensorflow as tf

    def test_step(data):
        return model.test_step(data)

    if jit_compile:
        test_step = tf.function(test_step, jit_compile=True, reduce_retracing=True, autograph=False)
    return test_step


def metrics_or_logs(model, logs: Dict) -> Dict:
    """What ``fit`` reports at the end of an epoch: the model's metrics, read across replicas,
    when the step's logs are those metrics; otherwise the step's own logs (a custom step
    that returns something else), as Keras' ``_get_metrics_result_or_logs`` decides."""
    metric_logs = model.get_metrics_result()
    if set(logs) == set(metric_logs):
        return metric_logs
    return logs


def describe(overrides: Sequence[str]) -> str:
    """``"train_step, compute_loss"`` or ``"none"``, for messages and summary.json."""
    return ", ".join(overrides) if overrides else "none"
