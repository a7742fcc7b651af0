"""Model registry: a name → factory table, plus user models given as ``module:Name``.

Register your own with :func:`register`, or pass ``--model package.module:Name`` where
``Name`` is a ``keras.Model`` subclass (instantiated without arguments) or a function
returning a ``keras.Model``. See :mod:`mnist_core.models.example`.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable, Dict, Sequence, Tuple

from mnist_core.errors import ModelError, one_line

DEFAULT_INPUT_SHAPE: Tuple[int, ...] = (28, 28, 1)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes:
        name: Registry name, the value of ``--model``.
        factory: Returns a new, unbuilt ``keras.Model``; accepts ``sync_batchnorm=``.
        input_shape: Shape of one example the model takes, ``(784,)`` or ``(28, 28, 1)``.
        description: One line for listings.
        instance: A ``keras.Model`` object to train as it is (``mnist_core.train(model=...)``),
            instead of calling ``factory``.
    """

    name: str
    factory: Callable
    input_shape: Tuple[int, ...]
    description: str
    instance: object = None


_REGISTRY: Dict[str, ModelSpec] = {}


def register(name: str, factory: Callable, input_shape: Sequence[int], description: str = "") -> None:
    """Adds a model under ``name``.

    Args:
        name: Name for ``--model``.
        factory: Callable returning a fresh ``keras.Model``; receives ``sync_batchnorm``.
        input_shape: Shape of one input example.
        description: One line shown in listings.
    """
    _REGISTRY[name] = ModelSpec(name, factory, tuple(input_shape), description or (factory.__doc__ or "").strip())


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
        name = name or f"{cls.__module__}:{cls.__qualname__}"
        shape = getattr(target, "mnist_input_shape", None)
        if shape is None:
            try:
                shape = tuple(target.inputs[0].shape[1:]) if target.inputs else None
            except (AttributeError, ValueError):
                shape = None
        return ModelSpec(name, cls, tuple(shape or DEFAULT_INPUT_SHAPE),
                         (inspect.getdoc(cls) or "").split("\n")[0], instance=target)
    name = name or f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"
    where = f"--model {name!r}"
    if inspect.isclass(target) and not issubclass(target, keras.Model):
        raise ModelError(f"{where}: {getattr(target, '__name__', target)} is a class but not a keras.Model subclass")
    if not callable(target):
        raise ModelError(f"{where}: neither a keras.Model subclass, a factory function nor a keras.Model")
    input_shape = tuple(getattr(target, "mnist_input_shape", DEFAULT_INPUT_SHAPE))
    return ModelSpec(name, target, input_shape, (inspect.getdoc(target) or "").split("\n")[0])


def build(spec: ModelSpec, *, sync_batchnorm: bool = False):
    """Instantiates and builds a model, checking it outputs ``[batch, 10]`` logits.

    Call inside ``strategy.scope()`` so the variables are created distributed.

    Raises:
        ModelError: the factory fails, returns something else than a ``keras.Model``, or
            the model's output is not ``[batch, 10]``.
    """
    import keras
    import numpy as np

    where = f"--model {spec.name!r}"
    try:
        if spec.instance is not None:
            model = spec.instance
        elif spec.name in _REGISTRY:
            model = spec.factory(sync_batchnorm=sync_batchnorm)
        else:
            model = spec.factory()
    except Exception as e:
        raise ModelError(f"{where}: building the model failed ({type(e).__name__}: {one_line(e)})") from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"{where}: returned {type(model).__name__}, expected a keras.Model")
    probe = np.zeros((2, *spec.input_shape), dtype="float32")
    try:
        out = model(probe, training=False)
    except Exception as e:
        raise ModelError(
            f"{where}: calling the model on a batch of shape {probe.shape} failed "
            f"({type(e).__name__}: {one_line(e)[:300]})"
        ) from None
    shape = tuple(getattr(out, "shape", ()))
    if len(shape) != 2 or shape[1] != 10:
        raise ModelError(f"{where}: output has shape {shape}, expected (batch, 10) logits")
    return model


def _builtin(name: str) -> Callable:
    """A factory that imports the zoo (and so Keras and TensorFlow) only when called:
    ``python -m mnist_core.models`` must be able to load TensorFlow quietly first."""

    def factory(**kwargs):
        from mnist_core.models import zoo

        return getattr(zoo, name)(**kwargs)

    factory.__name__ = factory.__qualname__ = name
    return factory


def _register_builtins() -> None:
    flat, image = (784,), DEFAULT_INPUT_SHAPE
    register("mlp", _builtin("mlp"), flat, "Flatten, Dense 1024-512-128 ReLU, Dense 10")
    register("mlp_small", _builtin("mlp_small"), flat, "Dense 32 ReLU, Dense 10")
    register("mlp_l1", _builtin("mlp_l1"), flat, "Dense 128-32 ReLU, L1(1e-4), dropout 0.01")
    register("deep_mlp", _builtin("deep_mlp"), flat, "Dense 512, dropout, Dense 512 L2 + BatchNorm, dropout")
    register("cnn", _builtin("cnn"), image, "Conv32-Conv32-MaxPool-Dropout-Dense128-Dropout")
    register("lenet", _builtin("lenet"), image, "LeNet: Conv6-AvgPool-Conv16-AvgPool-Conv120-Dense84")


_register_builtins()
