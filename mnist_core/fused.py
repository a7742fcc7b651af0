"""The default optimizer update: TensorFlow's fused training kernels in place of Keras' own.

Keras 3 writes each optimizer's update as a dozen or more element-wise ops per variable
(Adam: about 30 kernels a step for a 4-layer MLP's each weight and bias). TensorFlow has
one kernel per variable for the same update — ``ResourceApplyAdam``, ``ResourceApplyRMSProp``
(and its centred form), ``ResourceApplyAdadelta``, ``ResourceApplyKerasMomentum``,
``ResourceApplyGradientDescent`` — that reads and writes each array once. They compute the
same formulas in another order of rounding, so a step differs from Keras' by float
round-off (bounded in ``tests/test_fused.py``; ``python -m benchmarks.update_diff``
measures it), not bit for bit: ``--update keras`` keeps
Keras' own update, which ``model.fit`` runs, and every test of bitwise parity with ``fit``
uses it.

:func:`install` replaces the ``update_step`` of the optimizer instance mnist_core built (not
its class, its variables or its config): checkpoints, the saved model and everything Keras
does around the update (clipping, weight decay, EMA, gradient accumulation, loss scaling,
the cross-replica all-reduce) are unchanged. A variable the kernels cannot take (a sparse
gradient, a dtype other than float32) gets Keras' update, as does an optimizer option the
kernels do not have (Adam's ``amsgrad``), which :func:`install` reports.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import tensorflow as tf


def _handle(variable):
    """The resource handle of a Keras or TensorFlow variable (inside a strategy's update,
    a distributed variable gives the component on the device being updated)."""
    import keras

    if isinstance(variable, keras.Variable):
        variable = variable.value  # the backend's tf.Variable (tf.Variable.value is a method)
    return variable.handle


def _adam(opt) -> Optional[Callable]:
    if opt.amsgrad:
        return None

    def apply(gradient, variable, lr):
        index = opt._get_variable_index(variable)
        dtype = variable.dtype
        step = tf.cast(opt.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(opt.beta_1, dtype), tf.cast(opt.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(opt._momentums[index]), v=_handle(opt._velocities[index]),
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step), lr=lr, beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(opt.epsilon, dtype), grad=gradient, use_locking=False)

    return apply


def _rmsprop(opt, scratch: Dict) -> Callable:
    def apply(gradient, variable, lr):
        index = opt._get_variable_index(variable)
        dtype = variable.dtype
        # The kernels keep a momentum array; with momentum 0 it only carries this step's
        # increment (0 * previous + increment), so a scratch array stands in, untracked:
        # the optimizer's variables, and so checkpoints and saved models, stay Keras'.
        mom = _handle(opt._momentums[index]) if opt.momentum > 0 else _handle(scratch[opt._var_key(variable)])
        common = dict(var=_handle(variable), ms=_handle(opt._velocities[index]), mom=mom, lr=lr,
                      rho=tf.cast(opt.rho, dtype), momentum=tf.cast(opt.momentum, dtype),
                      epsilon=tf.cast(opt.epsilon, dtype), grad=gradient, use_locking=False)
        if opt.centered:
            tf.raw_ops.ResourceApplyCenteredRMSProp(mg=_handle(opt._average_gradients[index]), **common)
        else:
            tf.raw_ops.ResourceApplyRMSProp(**common)

    return apply


def _adadelta(opt) -> Callable:
    def apply(gradient, variable, lr):
        index = opt._get_variable_index(variable)
        dtype = variable.dtype
        tf.raw_ops.ResourceApplyAdadelta(
            var=_handle(variable), accum=_handle(opt._accumulated_grads[index]),
            accum_update=_handle(opt._accumulated_delta_vars[index]), lr=lr, rho=tf.cast(opt.rho, dtype),
            epsilon=tf.cast(opt.epsilon, dtype), grad=gradient, use_locking=False)

    return apply


def _sgd(opt) -> Callable:
    def apply(gradient, variable, lr):
        if opt.momentum == 0:
            tf.raw_ops.ResourceApplyGradientDescent(var=_handle(variable), alpha=lr, delta=gradient, use_locking=False)
            return
        index = opt._get_variable_index(variable)
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=_handle(variable), accum=_handle(opt.momentums[index]), lr=lr, grad=gradient,
            momentum=tf.cast(opt.momentum, variable.dtype), use_locking=False, use_nesterov=bool(opt.nesterov))

    return apply


def install(optimizer, variables) -> Optional[str]:
    """Makes ``optimizer`` (built, in the strategy's scope) update through the fused kernels.

    Args:
        optimizer: A built Keras optimizer mnist_core made (a ``LossScaleOptimizer``'s inner
            optimizer is the one changed).
        variables: The trainable variables it updates (scratch arrays are made for them
            where a kernel needs one Keras does not keep).

    Returns:
        ``None`` when installed, else why the optimizer keeps Keras' update (one phrase).
    """
    import keras

    opt = getattr(optimizer, "inner_optimizer", optimizer)
    kind = type(opt)
    if kind is keras.optimizers.Adam:
        apply = _adam(opt)
        if apply is None:
            return "Adam's amsgrad has no fused kernel"
    elif kind is keras.optimizers.RMSprop:
        scratch = {}
        if opt.momentum == 0:
            for variable in variables:
                value = getattr(variable, "value", variable)
                with tf.init_scope():
                    scratch[opt._var_key(variable)] = tf.Variable(tf.zeros(value.shape, value.dtype), trainable=False,
                                                                  name="rmsprop_increment")
        apply = _rmsprop(opt, scratch)
    elif kind is keras.optimizers.Adadelta:
        apply = _adadelta(opt)
    elif kind is keras.optimizers.SGD:
        apply = _sgd(opt)
    else:
        return f"{kind.__name__} has no fused kernel"
    keras_update = opt.update_step

    def update_step(gradient, variable, learning_rate):
        if isinstance(gradient, tf.IndexedSlices) or variable.dtype != tf.float32:
            return keras_update(gradient, variable, learning_rate)
        apply(tf.cast(gradient, variable.dtype), variable, tf.cast(learning_rate, variable.dtype))

    opt.update_step = update_step
    return None
