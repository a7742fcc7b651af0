"""Model registry: a name → factory table, plus user models given as ``module:Name``.

Register your own with :func:`register`, or pass ``--model package.module:Name`` where
``Name`` is a ``keras.Model`` subclass (instantiated without arguments) or a function
returning a ``keras.Model``. See :mod:`mnist_core.models.example`.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from mnist_core.errors import ModelError, brief, mixed_precision_hint, one_line

DEFAULT_INPUT_SHAPE: Tuple[int, ...] = (28, 28, 1)
DEFAULT_NUM_CLASSES = 10
# How a built-in model takes an image (H, W, C): flat (a vector of H*W*C) or as it is.
LAYOUTS = ("flat", "image")


# What a run's summary.json names a model by when it was a Python object or a class that
# another process cannot import (``__main__``, a notebook): --config cannot rebuild it.
UNREPRODUCIBLE = "python-object"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes:
        name: Registry name, the value of ``--model``.
        factory: Returns a new, unbuilt ``keras.Model``; called with ``sync_batchnorm=`` when
            it takes that argument (or ``**kwargs``), without arguments otherwise.
        input_shape: Shape of one example the model takes, ``(784,)`` or ``(28, 28, 1)``.
        description: One line for listings.
        instance: A ``keras.Model`` object to train as it is (``mnist_core.train(model=...)``),
            instead of calling ``factory``.
        input_shape_declared: ``input_shape`` was declared (registered, or a
            ``mnist_input_shape`` attribute) rather than the default; an undeclared one
            gives way to the model's own ``keras.Input`` (:func:`input_shape_of`).
        layout: ``flat`` or ``image`` for a model built for the data's image shape (the
            zoo's; ``input_shape`` is then its MNIST shape); ``None`` for a fixed shape.
    """

    name: str
    factory: Callable
    input_shape: Tuple[int, ...]
    description: str
    instance: object = None
    input_shape_declared: bool = True
    layout: Optional[str] = None

    def input_shape_for(self, image_shape: Sequence[int]) -> Tuple[int, ...]:
        """The input shape the model is built for, given the data's ``(H, W, C)`` images."""
        image_shape = tuple(int(d) for d in image_shape)
        if self.layout == "flat":
            return (int(np.prod(image_shape)),)
        if self.layout == "image" or not self.input_shape_declared:
            return image_shape
        return self.input_shape

    @property
    def label(self) -> str:
        """How messages name the model: the flag that chose it, or the object passed."""
        if self.instance is not None:
            return f"model= (a {type(self.instance).__name__} object)"
        return f"--model {self.name!r}"

    @property
    def reproducible(self) -> bool:
        """Whether ``--model NAME`` in another process builds this model again."""
        return self.instance is None and not self.name.startswith(("__main__:", UNREPRODUCIBLE))


_REGISTRY: Dict[str, ModelSpec] = {}


def register(name: str, factory: Callable, input_shape, description: str = "") -> None:
    """Adds a model under ``name``.

    Args:
        name: Name for ``--model``.
        factory: Callable returning a fresh ``keras.Model``; receives ``sync_batchnorm=``
            and ``num_classes=`` if it takes those arguments by name (``--sync-batchnorm``
            is applied to the built model's BatchNormalization layers either way), and
            ``input_shape=`` as :func:`_factory_arguments` says.
        input_shape: Shape of one input example, or ``"flat"``/``"image"``: built for
            the data's images (a vector of ``H*W*C``, or ``(H, W, C)``), passed to the
            factory as ``input_shape=``.
        description: One line shown in listings.
    """
    description = description or (factory.__doc__ or "").strip()
    if isinstance(input_shape, str):
        if input_shape not in LAYOUTS:
            raise ValueError(f"input_shape {input_shape!r}: a shape, 'flat' or 'image'")
        mnist = (784,) if input_shape == "flat" else DEFAULT_INPUT_SHAPE
        _REGISTRY[name] = ModelSpec(name, factory, mnist, description, layout=input_shape)
    else:
        _REGISTRY[name] = ModelSpec(name, factory, tuple(input_shape), description)


def names() -> Tuple[str, ...]:
    """Registered model names, in registration order."""
    return tuple(_REGISTRY)


def get(name: str) -> ModelSpec:
    """Resolves a registered name or ``module:Name`` to a :class:`ModelSpec`.

    Raises:
        ModelError: unknown name, or a module/attribute that cannot be imported.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith(UNREPRODUCIBLE) or name.startswith("__main__:"):
        raise ModelError(
            f"--model {name!r}: the run trained a model passed from Python (an object, or a class defined in a "
            "script or notebook), which another process cannot rebuild from its name; pass it again with "
            "mnist_core.train(config, model=...), or put it in a module and give --model package.module:Name"
        )
    if ":" not in name:
        raise ModelError(
            f"--model {name!r}: unknown model; choose one of {', '.join(names())} "
            "or give package.module:Name"
        )
    return _user_spec(name)


def _user_spec(path: str) -> ModelSpec:
    from mnist_core.resolve import import_attr

    return spec_for(import_attr(path, f"--model {path!r}", ModelError), path)


def spec_for(target, name: str = "") -> ModelSpec:
    """A :class:`ModelSpec` for a ``keras.Model`` subclass, a factory function or a model object.

    Args:
        target: The class (instantiated without arguments), the function (called without
            arguments) or a ``keras.Model`` instance (trained as it is).
        name: How messages and ``summary.json`` name it; default ``module:QualName``.

    Raises:
        ModelError: ``target`` is none of these.
    """
    import keras

    if isinstance(target, keras.Model):
        cls = type(target)
        name = name or f"{UNREPRODUCIBLE}:{cls.__module__}:{cls.__qualname__}"
        declared = getattr(target, "mnist_input_shape", None)
        return ModelSpec(name, cls, tuple(declared or DEFAULT_INPUT_SHAPE),
                         (inspect.getdoc(cls) or "").split("\n")[0], instance=target,
                         input_shape_declared=declared is not None)
    name = name or f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"
    where = f"--model {name!r}"
    if inspect.isclass(target) and not issubclass(target, keras.Model):
        raise ModelError(f"{where}: {getattr(target, '__name__', target)} is a class but not a keras.Model subclass")
    if not callable(target):
        raise ModelError(f"{where}: neither a keras.Model subclass, a factory function nor a keras.Model")
    declared = getattr(target, "mnist_input_shape", None)
    return ModelSpec(name, target, tuple(declared or DEFAULT_INPUT_SHAPE),
                     (inspect.getdoc(target) or "").split("\n")[0], input_shape_declared=declared is not None)


def input_shape_of(model, spec: ModelSpec, image_shape: Sequence[int] = DEFAULT_INPUT_SHAPE) -> Tuple[int, ...]:
    """The shape of one example ``model`` takes.

    A declared shape wins (the model's ``mnist_input_shape`` attribute, a registered shape,
    a factory's attribute, a zoo model's layout for ``image_shape``); then the model's own
    ``keras.Input`` (Sequential or Functional models that start with one); then the data's
    ``image_shape`` ``(H, W, C)``.
    """
    declared = getattr(model, "mnist_input_shape", None)
    if declared is not None:
        return tuple(declared)
    if spec.input_shape_declared:
        return spec.input_shape_for(image_shape)
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if inputs and len(inputs) == 1:
        shape = tuple(inputs[0].shape[1:])
        if shape and all(isinstance(d, int) for d in shape):
            return shape
    return spec.input_shape_for(image_shape)


def _factory_arguments(spec: ModelSpec, sync_batchnorm: bool, image_shape, num_classes: int) -> Dict:
    """What a factory is given: ``sync_batchnorm=`` where it takes it (by name or
    ``**kwargs``); ``num_classes=`` where it names that parameter; ``input_shape=``: the
    zoo's always (its layout for the data's images), a user's factory that names it only
    for images other than MNIST's (flat when its default shape is flat), so that a factory
    written for MNIST builds what it always built.

    Classes get none: ``keras.Model.__init__`` takes ``**kwargs`` and would refuse them.
    A ``**kwargs`` factory is not given the shape and classes it did not ask for: it may
    pass its keywords on to a Keras constructor.
    """
    factory = spec.factory
    if inspect.isclass(factory):
        return {}
    try:
        parameters = {p.name: p for p in inspect.signature(factory).parameters.values()}
    except (TypeError, ValueError):
        return {}
    arguments = {}
    if "sync_batchnorm" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        arguments["sync_batchnorm"] = sync_batchnorm
    if "num_classes" in parameters:
        arguments["num_classes"] = num_classes
    if "input_shape" in parameters:
        if spec.layout is not None:
            arguments["input_shape"] = spec.input_shape_for(image_shape)
        elif tuple(image_shape) != DEFAULT_INPUT_SHAPE:
            default = parameters["input_shape"].default
            flat = isinstance(default, (tuple, list)) and len(default) == 1
            arguments["input_shape"] = (int(np.prod(image_shape)),) if flat else tuple(image_shape)
    return arguments


def _keras_message(error: Exception) -> str:
    """An exception as one short line: Keras' "Arguments received by ..." part, which prints
    the probe's arrays, is dropped."""
    text = one_line(str(error).split("Arguments received by")[0])
    # Keras wraps a failure inside a layer's call in a paragraph about inferring its output
    # shape; the cause is what follows "Error encountered:".
    wrapper = re.match(r"Exception encountered when calling (\S+)\. .*? Error encountered: (.*)", text)
    if wrapper:
        text = f"in {wrapper.group(1)}: {wrapper.group(2)}"
    return brief(text) + mixed_precision_hint(text)


def build(spec: ModelSpec, *, sync_batchnorm: bool = False, image_shape: Sequence[int] = DEFAULT_INPUT_SHAPE,
          num_classes: int = DEFAULT_NUM_CLASSES):
    """Instantiates and builds a model for the data, checking it outputs ``[batch, num_classes]``
    logits or probabilities.

    Call inside ``strategy.scope()`` so the variables are created distributed. The model is
    called once on zeros of :func:`input_shape_of`'s shape.

    Args:
        spec: The model.
        sync_batchnorm: Passed to a factory that takes it.
        image_shape: The data's images, ``(H, W, C)``: a zoo model is built for them.
        num_classes: The data's classes: the width of the output.

    Raises:
        ModelError: the factory fails, returns something else than a ``keras.Model``, or
            the model's output is not ``[batch, num_classes]``.
    """
    model, problem = build_any(spec, sync_batchnorm=sync_batchnorm, image_shape=image_shape,
                               num_classes=num_classes, own_step_ok=False)
    return model


def build_any(spec: ModelSpec, *, sync_batchnorm: bool = False, image_shape: Sequence[int] = DEFAULT_INPUT_SHAPE,
              num_classes: int = DEFAULT_NUM_CLASSES, own_step_ok: bool = True) -> Tuple[object, Optional[str]]:
    """:func:`build`, also for a model that trains itself without being a classifier.

    A model that overrides ``train_step`` (a GAN, a VAE: Keras' guides) need not map images
    to class scores: it may have no ``call`` at all, or return images. With ``own_step_ok``
    such a model is returned with the reason it is not a classifier, instead of refused;
    its layers must then be built (mnist_core cannot call it to build them).

    Returns:
        ``(model, reason)``: ``reason`` is ``None`` for a classifier.

    Raises:
        ModelError: as :func:`build`; a model with its own ``train_step`` whose layers are
            not built.
    """
    import keras

    from mnist_core.keras_step import overridden_methods

    where = spec.label
    image_shape = tuple(int(d) for d in image_shape)
    try:
        if spec.instance is not None:
            model = spec.instance
        else:
            model = spec.factory(**_factory_arguments(spec, sync_batchnorm, image_shape, num_classes))
    except Exception as e:
        raise ModelError(f"{where}: building the model failed ({type(e).__name__}: {_keras_message(e)})") from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"{where}: returned {type(model).__name__}, expected a keras.Model")
    own_step = own_step_ok and "train_step" in overridden_methods(model)
    input_shape = input_shape_of(model, spec, image_shape)
    probe = np.zeros((2, *input_shape), dtype="float32")
    h, w, c = image_shape
    problem = None
    try:
        out = model(probe, training=False)
    except Exception as e:
        if not own_step:
            raise ModelError(
                f"{where}: calling the model on a batch of shape {probe.shape} failed "
                f"({type(e).__name__}: {_keras_message(e)}); mnist_core feeds float32 images in [0, 1] shaped "
                f"({h}, {w}, {c}) (the data's), or the shape the model declares: a class attribute "
                f"mnist_input_shape = ({h * w * c},) or a first keras.Input(({h * w * c},))"
            ) from None
        out = None
        problem = (f"{type(model).__name__}.call() is not implemented" if isinstance(e, NotImplementedError)
                   else f"calling it on images failed ({type(e).__name__}: {_keras_message(e)[:120]})")
    if out is not None:
        shape = tuple(getattr(out, "shape", ())) if not isinstance(out, (list, tuple, dict)) else None
        if shape is None:
            problem = f"it returns {len(out)} outputs"
        elif len(shape) != 2 or shape[1] != num_classes:
            problem = f"its output has shape {shape}"
        if problem and not own_step:
            if shape is None:
                raise ModelError(f"{where}: returns {len(out)} outputs; mnist_core trains a model with one output "
                                 f"of shape (batch, {num_classes})")
            raise ModelError(f"{where}: output has shape {shape}, expected (batch, {num_classes}) logits or class "
                             f"probabilities (the data has {num_classes} classes)")
    if int(np.prod(input_shape)) != h * w * c and (problem is None or out is not None):
        raise ModelError(f"{where}: takes inputs of shape {input_shape} ({int(np.prod(input_shape))} values), "
                         f"but the data's images are {h}x{w}x{c} ({h * w * c} values)")
    if problem is not None:
        unbuilt = [layer.name for layer in model._flatten_layers(include_self=False) if not layer.built]
        if unbuilt:
            raise ModelError(
                f"{where}: the model trains itself ({type(model).__name__}.train_step) and is not a classifier "
                f"({problem}), so mnist_core cannot call it to create its variables, and its layer "
                f"{unbuilt[0]!r} is not built; start its networks with keras.Input(shape=...) (as Keras' guides "
                "do) or call them once on a batch in the factory")
        problem = f"{problem}, not (batch, {num_classes}) class scores"
    return model, problem


def _builtin(name: str) -> Callable:
    """A factory that imports the zoo (and so Keras and TensorFlow) only when called:
    ``python -m mnist_core.models`` must be able to load TensorFlow quietly first."""

    def factory(sync_batchnorm: bool = False, input_shape=None, num_classes: int = DEFAULT_NUM_CLASSES):
        from mnist_core.models import zoo

        return getattr(zoo, name)(sync_batchnorm=sync_batchnorm, input_shape=input_shape, num_classes=num_classes)

    factory.__name__ = factory.__qualname__ = name
    return factory


def _register_builtins() -> None:
    flat, image = "flat", "image"
    register("mlp", _builtin("mlp"), flat, "Dense 1024-512-128 ReLU, Dense 10 logits")
    register("mlp_small", _builtin("mlp_small"), flat, "Dense 32 ReLU, Dense 10")
    register("mlp_l1", _builtin("mlp_l1"), flat, "Dense 128-32 ReLU, L1(1e-4), dropout 0.01")
    register("deep_mlp", _builtin("deep_mlp"), flat, "Dense 512, dropout, Dense 512 L2 + BatchNorm, dropout")
    register("cnn", _builtin("cnn"), image, "Conv32-Conv32-MaxPool-Dropout-Dense128-Dropout")
    register("lenet", _builtin("lenet"), image, "LeNet: Conv6-AvgPool-Conv16-AvgPool-Conv120-Dense84")
    # The tutorials' scripts' models as written (softmax/sigmoid outputs), by script id.
    for name, shape, script, description in (
            ("linear_mlp_softmax", image, "000", "Flatten, Dense 1024-512-128 without activations, softmax"),
            ("mlp32_softmax", flat, "001a", "Dense 32 ReLU, Dense 10 softmax"),
            ("cnn_softmax", image, "001b", "the tutorial CNN ending in softmax"),
            ("mlp15_softmax", flat, "002a", "Dense 15 ReLU, Dense 10 softmax"),
            ("mlp_l1_softmax", flat, "002b", "Dense 128-32 ReLU L1(1e-4), dropout 0.01, softmax"),
            ("lenet_softmax", image, "002c", "LeNet ending in softmax"),
            ("mlp15_sigmoid", flat, "003a", "Dense 15 sigmoid, Dense 10 sigmoid"),
            ("mlp_l2_softmax", flat, "003b", "Dense 128-30 ReLU L2(0.1), softmax"),
            ("deep_mlp_softmax", flat, "004", "deep_mlp as written: ReLU layers, softmax")):
        register(name, _builtin(name), shape, f"script {script}: {description}")


_register_builtins()
