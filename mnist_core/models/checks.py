"""What a run's flags ask of a model, applied or refused in one line: precision and synchronized BatchNorm.

A flag that transforms a model must never be silently ignored: a user's model built
elsewhere (an object, or a factory that fixes its own dtypes) may not be able to take it.
Each check here either makes the model honour the flag or raises one line naming the
flag and what to change.
"""

from __future__ import annotations

from typing import List

from mnist_core.errors import ConfigError

_COMPUTE_DTYPES = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def batch_norm_layers(model) -> List:
    """Every BatchNormalization layer of the model, nested models included."""
    import keras

    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)]


def apply_sync_batchnorm(model, where: str) -> None:
    """``--sync-batchnorm``: every BatchNormalization layer all-reduces its batch statistics.

    Keras reads ``synchronized`` when the layer is called, so setting it on a built model
    (a user's factory or object, which mnist_core did not construct) is the same as
    constructing the layer with ``synchronized=True``; the saved model records it.

    Raises:
        ConfigError: the model has no BatchNormalization layer: the flag would change nothing.
    """
    layers = batch_norm_layers(model)
    if not layers:
        raise ConfigError(f"--sync-batchnorm: {where} has no BatchNormalization layer, so there are no batch "
                          "statistics to synchronise; drop the flag")
    for layer in layers:
        layer.synchronized = True


def check_precision(model, precision: str, where: str, built_here: bool) -> None:
    """Refuses a model whose layers do not compute in the dtype ``--precision`` asks for.

    A model mnist_core builds (a registered name, a class or a factory) is built under the
    run's dtype policy; one passed as an object was built before, under whatever policy was
    set then, and one whose layers fix their own ``dtype`` ignores the policy.

    Raises:
        ConfigError: naming the precision, what the model computes in, and what to change.
    """
    wanted = _COMPUTE_DTYPES[precision]
    dtypes = {str(layer.compute_dtype) for layer in model._flatten_layers(include_self=False) if layer.weights}
    if not dtypes or (dtypes == {"float32"} if precision == "float32" else wanted in dtypes):
        return
    found = ", ".join(sorted(dtypes))
    if not built_here:
        raise ConfigError(
            f"--precision {precision}: {where} is a keras.Model object built before the run, whose layers "
            f"compute in {found}; pass its class or a function that builds it (mnist_core builds it under "
            f"{precision}), or build it after keras.config.set_dtype_policy({precision!r})"
        )
    raise ConfigError(
        f"--precision {precision}: the layers of {where} compute in {found}, not {wanted}: they set their own "
        "dtype; drop their dtype= arguments (dtype='float32' on the last layer alone is right for mixed precision)"
    )
