"""mnist_core: MNIST-style classifiers trained by a compiled tf.GradientTape loop.

Public entry points: :func:`mnist_core.controller.train` with a
:class:`mnist_core.config.TrainConfig`, the model registry :mod:`mnist_core.models`, and the
CLIs ``python -m mnist_core.train`` / ``python -m mnist_core.evaluate``.
"""

__version__ = "0.1.0"
