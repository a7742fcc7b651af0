"""mnist_core: MNIST-style classifiers trained by a compiled tf.GradientTape loop.

Public entry points: :func:`mnist_core.controller.train` with a
:class:`mnist_core.config.TrainConfig`, the model registry :mod:`mnist_core.models`,
:mod:`mnist_core.inference` (load ``model.keras`` or a SavedModel, classify, export), and the
CLIs ``python -m mnist_core.train``, ``.evaluate``, ``.predict``, ``.plot`` and ``.models``.
"""

__version__ = "0.1.0"
