"""Keras mixed-precision policy for a run, restored afterwards.

Under ``mixed_float16``/``mixed_bfloat16`` layers compute in 16 bits and keep float32
variables; the built-in models' final ``Dense`` is float32, and the step casts any user
model's logits to float32, so softmax and loss are always computed in float32.
"""

from __future__ import annotations

import contextlib

import keras


@contextlib.contextmanager
def policy(name: str):
    """Sets the global Keras dtype policy to ``name`` for the duration of the block."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
