"""Keras callbacks in mnist_core's loop, with ``model.fit``'s contract.

Ordinary ``keras.callbacks.Callback`` objects run unchanged (see
:class:`mnist_core.actions.KerasCallbacks` for when each hook is called), the stock ones
included (``TensorBoard`` writes where it is told, beside mnist_core's own logs). Three
stock callbacks duplicate what mnist_core does itself and would fight it, so they are
refused with a pointer to the built-in equivalent; anything else that is not a
``Callback`` is refused too, rather than silently never called.
"""

from __future__ import annotations

import inspect
from typing import Iterable, List, Sequence

from mnist_core.errors import ConfigError, brief
from mnist_core.resolve import import_attr

# Stock callbacks whose job mnist_core already does, and what to use instead.
REFUSED = {
    "ProgbarLogger": "mnist_core prints its own progress bar per epoch (and --quiet silences it); two bars would "
                     "write over each other",
    "SwapEMAWeights": "mnist_core evaluates and saves the weights' moving average itself whenever the optimizer keeps "
                      "one (--ema, or a compiled optimizer with use_ema=True); swapping them again would evaluate "
                      "the raw weights",
    "BackupAndRestore": "mnist_core checkpoints the whole training state itself (every epoch, "
                        "--checkpoint-every N) and continues a run exactly with --resume",
}

# Callbacks that change the learning rate through ``model.optimizer.learning_rate``,
# which a learning-rate schedule does not allow.
_SETS_LEARNING_RATE = ("ReduceLROnPlateau", "LearningRateScheduler")


def _stock_name(callback) -> str:
    """The name of the stock Keras callback class ``callback`` is (or derives from), or ''."""
    import keras

    for cls in type(callback).__mro__:
        if cls.__module__.startswith("keras") and getattr(keras.callbacks, cls.__name__, None) is cls:
            return cls.__name__
    return ""


def check_callbacks(callbacks: Iterable, lr_schedule: str = "constant", where: str = "callbacks") -> List:
    """Validates user callbacks; returns them as a list.

    Raises:
        ConfigError: one that is not a ``keras.callbacks.Callback`` instance, a refused
            stock callback, or one that sets the learning rate under a schedule.
    """
    import keras

    checked = []
    for callback in callbacks or ():
        label = f"{where}: {getattr(callback, '__name__', type(callback).__name__)}"
        if inspect.isclass(callback):
            raise ConfigError(f"{label} is a class; pass an instance, e.g. {callback.__name__}(...)")
        if not isinstance(callback, keras.callbacks.Callback):
            raise ConfigError(f"{label} is not a keras.callbacks.Callback, so mnist_core would never call it")
        stock = _stock_name(callback)
        if stock in REFUSED:
            raise ConfigError(f"{label}: keras.callbacks.{stock} is not supported: {REFUSED[stock]}")
        if stock in _SETS_LEARNING_RATE and lr_schedule != "constant":
            raise ConfigError(f"{label}: keras.callbacks.{stock} sets the learning rate, which --lr-schedule "
                              f"{lr_schedule} already controls; use --lr-schedule constant with it")
        checked.append(callback)
    return checked


def load_callbacks(specs: Sequence[str]) -> List:
    """Builds the callbacks named by ``--callback module:factory`` flags.

    ``factory`` is a ``Callback`` subclass (instantiated without arguments) or a function
    returning a ``Callback`` or a list of them.

    Raises:
        ConfigError: naming the flag and what is wrong.
    """
    callbacks = []
    for spec in specs:
        flag = f"--callback {spec}"
        target = import_attr(spec, flag, ConfigError)
        attr = spec.partition(":")[2]
        if not callable(target):
            raise ConfigError(f"{flag}: {attr} is not a Callback class or a factory function")
        try:
            made = target()
        except Exception as e:
            raise ConfigError(f"{flag}: calling {attr}() failed ({type(e).__name__}: {brief(e, 200)})") from None
        made = list(made) if isinstance(made, (list, tuple)) else [made]
        callbacks.extend(made)
        for callback in made:
            check_callbacks([callback], where=flag)
    return callbacks
