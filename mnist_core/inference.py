"""Using a trained model: load it (``model.keras`` or SavedModel), classify uint8 images, export.

Both formats are driven through one interface, :class:`Classifier`, whose input is what
the datasets hold and what TF Serving clients send: uint8 images ``[N, 28, 28]``. The
normalisation to the model's input (:func:`mnist_core.data.normalize_images`) happens
inside, so callers can't feed a model differently from how it was trained.

The exported SavedModel's ``serving_default`` signature::

    inputs:  images         uint8   [N, 28, 28]
    outputs: probabilities  float32 [N, 10]   softmax of the logits
             classes        int64   [N]       argmax
             logits         float32 [N, 10]   (exact cross-entropy for evaluation)

and a ``regularization_loss`` signature (no inputs → ``loss``: the model's
``sum(model.losses)``), so evaluating the SavedModel reports the same loss as training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np

from mnist_core.data import IMAGE_SIZE, normalize_images
from mnist_core.errors import ConfigError, ModelError, one_line

SAVEDMODEL_DIR = "saved_model"
SIGNATURE = "serving_default"


def is_savedmodel(path: Path) -> bool:
    """True for a SavedModel directory (it holds ``saved_model.pb``)."""
    return path.is_dir() and (path / "saved_model.pb").exists()


def run_summary(model_path: Path) -> Dict:
    """The ``summary.json`` of the run that wrote ``model_path`` ({} if there is none).

    ``RUN/model.keras`` and ``RUN/saved_model/`` both have it in their parent, ``RUN``.
    """
    summary = Path(model_path).parent / "summary.json"
    try:
        value = json.loads(summary.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def load_run_data(summary: Dict, dataset: Optional[str] = None, data_dir: Optional[str] = None):
    """The data a run trained and tested on, from its ``summary.json`` contents.

    Args:
        summary: The run's summary (``{}`` when unknown: MNIST from the default sources).
        dataset: Overrides the run's dataset.
        data_dir: Overrides the run's data location.
    """
    from mnist_core import data as data_lib

    config = summary.get("config", {})
    return data_lib.load(dataset or config.get("dataset", "mnist"), data_dir or config.get("data_dir"),
                         seed=config.get("seed", 0),
                         synthetic_train_size=config.get("synthetic_train_size", 60000))


def _serving_fn(model, input_shape: Sequence[int]):
    import tensorflow as tf

    def serve(images):
        logits = tf.cast(model(normalize_images(images, input_shape), training=False), tf.float32)
        return {
            "probabilities": tf.nn.softmax(logits),
            "classes": tf.argmax(logits, axis=-1),
            "logits": logits,
        }

    return serve


def _regularization(model):
    import tensorflow as tf

    losses = [tf.cast(loss, tf.float32) for loss in model.losses]
    return tf.add_n(losses) if losses else tf.constant(0.0, tf.float32)


def _image_spec():
    import tensorflow as tf

    return tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE], tf.uint8, name="images")


def export_savedmodel(model, input_shape: Sequence[int], path: Path) -> Path:
    """Writes ``model`` as a SavedModel whose default signature takes uint8 ``[N, 28, 28]``.

    Args:
        model: A trained Keras model (built).
        input_shape: The shape of one model input example, e.g. ``(784,)``.
        path: The directory to write (replaced if it exists).

    Returns:
        ``path``.
    """
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint also becomes "serving_default", the one TF Serving calls.
    archive.add_endpoint(name="serve", fn=_serving_fn(model, input_shape), input_signature=[_image_spec()])
    archive.add_endpoint(name="regularization_loss", fn=lambda: {"loss": _regularization(model)},
                         input_signature=[])
    from mnist_core.files import write_atomically

    # Written beside the target and renamed into place: an interrupted export never
    # leaves a half-written SavedModel where a server would load it.
    return write_atomically(Path(path), lambda tmp: archive.write_out(str(tmp), verbose=False))


class Classifier:
    """A trained model that maps uint8 images ``[N, 28, 28]`` to logits.

    Use :func:`load_classifier` to make one.

    Attributes:
        path: Where the model was loaded from.
        format: ``"keras"`` or ``"savedmodel"``.
        regularization_loss: The model's regularisation term (``sum(model.losses)``), which
            the training run adds to its reported loss.
    """

    def __init__(self, path: Path, fmt: str, fn, regularization_loss: float = 0.0):
        self.path = path
        self.format = fmt
        self._fn = fn
        self.regularization_loss = regularization_loss

    def logits(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """float32 logits ``[N, 10]`` of uint8 images ``[N, 28, 28]``, computed in batches."""
        import tensorflow as tf

        images = np.asarray(images, dtype=np.uint8)
        out = [self._fn(tf.constant(images[i:i + batch_size]))["logits"].numpy()
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, 10), np.float32)

    def probabilities(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Softmax probabilities ``[N, 10]`` of uint8 images ``[N, 28, 28]``."""
        return softmax(self.logits(images, batch_size))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64."""
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def load_classifier(path: Path, input_shape: Optional[Sequence[int]] = None) -> Classifier:
    """Loads ``RUN/model.keras`` or an exported SavedModel directory.

    Args:
        path: A ``.keras`` file or a SavedModel directory.
        input_shape: The model's input example shape, for ``.keras`` models; default: the
            run's ``summary.json``, else the model's own input shape.

    Raises:
        ConfigError: ``path`` does not exist.
        ModelError: ``path`` exists but is not a loadable model.
    """
    import tensorflow as tf

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--model-path {path}: no such file or directory")
    if path.is_dir():
        if not is_savedmodel(path):
            raise ModelError(f"--model-path {path}: a directory without saved_model.pb (not a SavedModel)")
        try:
            loaded = tf.saved_model.load(str(path))
            fn = loaded.signatures[SIGNATURE]
        except Exception as e:
            raise ModelError(f"--model-path {path}: cannot load the SavedModel "
                             f"({type(e).__name__}: {one_line(e)[:200]})") from None
        inputs = fn.structured_input_signature[1]
        if "images" not in inputs or "logits" not in fn.structured_outputs:
            raise ModelError(f"--model-path {path}: not an mnist_core export (its {SIGNATURE} signature "
                             "lacks the uint8 'images' input or the 'logits' output)")
        reg = 0.0
        if "regularization_loss" in loaded.signatures:
            reg = float(loaded.signatures["regularization_loss"]()["loss"])
        # Keep the loaded object alive with the function that uses its variables.
        return Classifier(path, "savedmodel", lambda images, _keep=loaded: fn(images=images), reg)
    model = load_keras_model(path)
    if input_shape is None:
        input_shape = run_summary(path).get("input_shape") or model.input_shape[1:]
    serve = tf.function(_serving_fn(model, tuple(input_shape)), input_signature=[_image_spec()])
    reg = float(_regularization(model))
    return Classifier(path, "keras", serve, regularization_loss=reg)


def classifier_for(model, input_shape: Optional[Sequence[int]] = None) -> Classifier:
    """A :class:`Classifier` around a ``keras.Model`` in memory (as trained by ``mnist_core.train``).

    Args:
        model: Takes float images in [0, 1] of ``input_shape``; returns logits.
        input_shape: Default: the model's ``mnist_input_shape``, else its input layer's
            shape, else ``(28, 28, 1)``.
    """
    import tensorflow as tf

    from mnist_core import models as model_lib

    if input_shape is None:
        input_shape = model_lib.spec_for(model).input_shape
    serve = tf.function(_serving_fn(model, tuple(input_shape)), input_signature=[_image_spec()])
    return Classifier(Path(f"<{type(model).__name__} in memory>"), "keras", serve,
                      regularization_loss=float(_regularization(model)))


def load_keras_model(path: Path):
    """Loads a ``.keras`` model (compile=False: only the weights and graph are needed)."""
    import keras

    import mnist_core.models.example  # noqa: F401  registers the example model for loading

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--model-path {path}: no such file")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:
        raise ModelError(f"--model-path {path}: cannot load the model ({type(e).__name__}: {one_line(e)[:200]})") from None


def classifier_of(model: Union[str, Path, object]):
    """A :class:`mnist_core.inference.Classifier` for a path or an in-memory model."""
    if isinstance(model, (str, Path)):
        return load_classifier(Path(model))
    return classifier_for(model)


def predict_proba(model, images, *, batch_size: int = 512) -> np.ndarray:
    """Class probabilities ``[N, 10]`` of images.

    Args:
        model: A path (``RUN/model.keras`` or a SavedModel directory) or a ``keras.Model``.
        images: uint8 pixels or floats in [0, 1] (rounded to 8-bit pixels), shaped ``[N, 28, 28]``,
            ``[N, 28, 28, 1]`` or ``[N, 784]`` (already MNIST-like: light on dark,
            centred; ``mnist-predict`` prepares photos and files).
        batch_size: Images per forward pass.
    """
    from mnist_core import data as data_lib

    pixels = data_lib.from_arrays((images, np.zeros(len(images), np.uint8)) * 2).train_images
    if pixels.dtype != np.uint8:
        pixels = np.round(pixels * 255.0).astype(np.uint8)
    return classifier_of(model).probabilities(pixels, batch_size)
