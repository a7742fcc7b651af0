"""Tracing user code before training: what cannot become a graph is one line, not a traceback.

The compiled loops are traced before the first step and before the run directory is
touched (:meth:`mnist_core.program.Program.trace`). User code (a model's ``call``, a
``train_step``, ``compute_loss``...) that fails there, or that has a Python side effect
that would run once at tracing instead of at every step, stops the run with one line
naming the method and why.
"""

from __future__ import annotations

import contextlib
import io
from typing import Dict, Iterator, List, Sequence, Tuple

from mnist_core.errors import ModelError, brief, mixed_precision_hint, one_line


def _public_state(model) -> Dict[str, object]:
    """The model's own public Python attributes that a step might mutate as a side effect."""
    state = {}
    for name, value in vars(model).items():
        if name.startswith("_") or name in ("built", "trainable", "stop_training", "compiled", "history",
                                             "optimizer", "name", "loss", "steps_per_execution"):
            continue
        if isinstance(value, (bool, int, float, str)):
            state[name] = value
        elif isinstance(value, (list, dict, set, tuple)):
            state[name] = ("len", len(value))
    return state


@contextlib.contextmanager
def traced_user_code(model, where: str, methods: Sequence[str]) -> Iterator[None]:
    """Runs a trace of ``methods`` and turns what cannot work in a graph into one line.

    Inside the block the model's overridden protocol methods (and ``call``) are wrapped
    so that a failure names the innermost one that raised. After a successful trace, two
    Python side effects that would silently happen once, at tracing, instead of at every
    step are refused: a change of a public Python attribute of the model (a counter kept
    in a Python int), and printing (``print`` instead of ``tf.print``).

    Raises:
        ModelError: naming the method and why.
    """
    active: List[str] = []
    failed: List[Tuple[str, Exception]] = []
    names = [*methods, "call"]
    missing = object()
    previous = {name: vars(model).get(name, missing) for name in names}
    for name in names:
        bound = getattr(model, name)

        def wrapper(*args, __name=name, __bound=bound, **kwargs):
            active.append(__name)
            try:
                return __bound(*args, **kwargs)
            except Exception as error:
                if not failed:  # the innermost method, with the error as the user's code raised it
                    failed.append((__name, error))
                raise
            finally:
                active.pop()

        object.__setattr__(model, name, wrapper)
    before = _public_state(model)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:
        if not failed:
            raise ModelError(f"{where}: tracing the compiled loop failed ({brief(_innermost(e))})") from None
        method, error = failed[0]
        text = one_line(error)
        if any(word in text for word in ("numpy", "NumPy", "symbolic", "__array__")):
            hint = "; inside a step use keras.ops or tf ops, not numpy or .numpy()"
        else:
            hint = mixed_precision_hint(text)
        raise ModelError(
            f"{where}: {method}() cannot be traced into a TensorFlow graph "
            f"({type(error).__name__}: {brief(text)}){hint}"
        ) from None
    finally:
        for name, value in previous.items():
            if value is missing:
                object.__delattr__(model, name)
            else:
                object.__setattr__(model, name, value)
    after = _public_state(model)
    changed = sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))
    if changed:
        raise ModelError(
            f"{where}: tracing {'/'.join(methods) or 'call'}() changed self.{changed[0]}, a Python side effect "
            "that runs once, when TensorFlow traces the step, not at every step; keep such state in a "
            "keras.Variable (self.add_weight / keras.Variable) or a metric"
        )
    if printed.getvalue().strip():
        first = printed.getvalue().strip().splitlines()[0][:80]
        raise ModelError(
            f"{where}: tracing {'/'.join(methods) or 'call'}() printed {first!r}; Python's print runs once, "
            "when TensorFlow traces the step, not at every step: use tf.print or a metric"
        )


def _innermost(error: BaseException) -> str:
    """The error that TensorFlow's "in user code:" traceback text ends with, in one line.

    A failure inside a traced function is re-raised with the traced frames' file names
    first; the user needs its last line (``ValueError: No loss to compute...``).
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if lines and lines[0].startswith("in user code"):
        return one_line(lines[-1])
    return f"{type(error).__name__}: {one_line(error)}"
