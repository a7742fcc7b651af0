"""Using a trained model: load it (``.keras``, ``.h5`` or SavedModel), classify images, export it.

Every format is driven through one interface, :class:`Classifier`, whose input is what the
datasets hold and what TF Serving clients send: uint8 images ``[N, 28, 28]``. Turning them
into the model's input (:func:`mnist_core.data.normalize_images`: the shape, and pixels in
[0, 1] or 0-255) happens inside, as does reading the model's outputs as what they are
(logits, or a softmax's or sigmoid's probabilities: :mod:`mnist_core.models.outputs`), so
callers cannot use a model differently from how it was trained.

**A model carries what using it needs.** A run writes a :class:`ModelInfo` — dataset,
class names, input shape, output kind, pixel scale — into every file it saves: an
``mnist_core.json`` entry inside ``model.keras`` (a zip archive whose other entries Keras
reads and ignores this one), an attribute of ``model.h5``, and a ``model_info`` signature
of the SavedModel. A copy moved out of its run directory therefore predicts and evaluates
exactly as the original. Files of older runs, without it, fall back to their run's
``summary.json``, then to what the model itself shows.

The exported SavedModel's ``serving_default`` signature::

    inputs:  images         uint8   [N, 28, 28]
    outputs: probabilities  float32 [N, 10]
             classes        int64   [N]       argmax
             logits         float32 [N, 10]   (exact cross-entropy for evaluation)

plus ``regularization_loss`` (no inputs → ``loss``: the model's ``sum(model.losses)``, so
evaluating the SavedModel reports the same loss as training) and ``model_info``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import weakref
import zipfile
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

from mnist_core.data import IMAGE_SIZE, normalize_images
from mnist_core.errors import ConfigError, DataError, ModelError, brief

SAVEDMODEL_DIR = "saved_model"
# A run whose model Keras cannot save whole (no get_config) keeps its trained weights in this file.
WEIGHTS_ONLY = "model.weights.h5"
_REBUILD = ("a weights file holds no architecture: build the model with its code, call model.load_weights(FILE) "
            "and use the model object from Python")
SIGNATURE = "serving_default"
INFO_ENTRY = "mnist_core.json"  # inside a .keras archive
INFO_ATTRIBUTE = "mnist_core_info"  # of a .h5 file's root group
INFO_SIGNATURE = "model_info"  # of a SavedModel


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What using a trained model needs besides its weights.

    Attributes:
        dataset: ``mnist``, ``fashion_mnist``, ``synthetic``, a TFDS name, or the name a run
            gave its own data.
        class_names: The classes' display names (10 for MNIST), one per model output.
        input_shape: One example as the model takes it: ``(784,)`` or ``(28, 28, 1)``.
        image_shape: One image as the serving signature and ``as_pixels`` take it:
            ``(28, 28)`` (one channel) or ``(H, W, C)``.
        outputs: ``logits``, ``softmax`` or ``sigmoid`` (:mod:`mnist_core.models.outputs`);
            ``none`` for a model that is not a classifier (a GAN, a VAE), which evaluation
            and prediction refuse.
        pixels: ``unit`` (pixels scaled to [0, 1]) or ``raw`` (0-255 values).
        source: Where this came from: ``model`` (written into the file), ``run`` (the run's
            summary.json), ``guessed`` (the model's own input and outputs; dataset unknown).
    """

    dataset: str = "mnist"
    class_names: Tuple[str, ...] = tuple(str(i) for i in range(10))
    input_shape: Tuple[int, ...] = (IMAGE_SIZE, IMAGE_SIZE, 1)
    outputs: str = "logits"
    pixels: str = "unit"
    source: str = "guessed"
    image_shape: Tuple[int, ...] = (IMAGE_SIZE, IMAGE_SIZE)
    # Why ``pixels`` is a guess (the model carries no record of its scale), or "": said in a
    # warning wherever such a model is used, with the flag that settles it.
    pixels_guess: str = ""

    def to_json(self) -> str:
        values = dataclasses.asdict(self)
        values.pop("source")
        values.pop("pixels_guess")
        values["format"] = 1
        return json.dumps(values)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> Optional["ModelInfo"]:
        try:
            values = json.loads(text)
            return cls(dataset=str(values["dataset"]), class_names=tuple(str(n) for n in values["class_names"]),
                       input_shape=tuple(int(d) for d in values["input_shape"]), outputs=str(values["outputs"]),
                       pixels=str(values["pixels"]), source=source,
                       image_shape=tuple(int(d) for d in values.get("image_shape", (IMAGE_SIZE, IMAGE_SIZE))))
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def known_dataset(self) -> bool:
        return self.source != "guessed"


def is_savedmodel(path: Path) -> bool:
    """True for a SavedModel directory (it holds ``saved_model.pb``)."""
    path = Path(path)
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


def _info_from_summary(summary: Dict) -> Optional[ModelInfo]:
    from mnist_core import data as data_lib

    config = summary.get("config") or {}
    if not summary.get("input_shape") or not config.get("dataset"):
        return None
    dataset = config["dataset"]
    image = tuple(summary.get("image_shape") or (IMAGE_SIZE, IMAGE_SIZE, 1))
    return ModelInfo(dataset=dataset, class_names=tuple(summary.get("class_names") or data_lib.class_names(dataset)),
                     input_shape=tuple(summary["input_shape"]), outputs=summary.get("outputs", "logits"),
                     pixels=config.get("pixels", "unit"), source="run",
                     image_shape=image[:2] if image[-1] == 1 else image)


def read_model_info(path: Path) -> Optional[ModelInfo]:
    """The :class:`ModelInfo` written into a saved model (``.keras``, ``.h5``, SavedModel), or None."""
    path = Path(path)
    try:
        if path.is_dir():
            import tensorflow as tf

            loaded = tf.saved_model.load(str(path))
            if INFO_SIGNATURE in loaded.signatures:
                return ModelInfo.from_json(loaded.signatures[INFO_SIGNATURE]()["info"].numpy().decode())
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if INFO_ENTRY in archive.namelist():
                    return ModelInfo.from_json(archive.read(INFO_ENTRY).decode())
                # Saved by the user's own model.save() after a run: the info travels in the
                # model's build config (carry_info).
                config = json.loads(archive.read("config.json").decode())
                recorded = (config.get("build_config") or {}).get(BUILD_CONFIG_KEY)
                if recorded:
                    return ModelInfo.from_json(json.dumps(recorded))
        elif path.suffix == ".h5":
            import h5py

            with h5py.File(path, "r") as f:
                if INFO_ATTRIBUTE in f.attrs:
                    text = f.attrs[INFO_ATTRIBUTE]
                    return ModelInfo.from_json(text.decode() if isinstance(text, bytes) else str(text))
    except Exception:  # an unreadable file is reported by whoever loads the model
        return None
    return None


BUILD_CONFIG_KEY = "mnist_core_info"


def carry_info(model, info: ModelInfo) -> None:
    """Makes every later ``model.save(...)`` of ``model`` carry ``info``, the user's own too.

    Keras writes a model's ``get_build_config()`` into the file and, when loading, reads
    only the keys it knows from it; the info is added there as one more key, so a model
    trained by mnist_core and saved by plain Keras still says how it is fed (its pixel
    scale above all), and loads anywhere as before.
    """
    original = type(model).get_build_config

    def get_build_config(self=model):
        config = original(self) or {}
        return {**config, BUILD_CONFIG_KEY: json.loads(info.to_json())}

    object.__setattr__(model, "mnist_info", info)
    object.__setattr__(model, "get_build_config", get_build_config)


def _has_rescaling(model) -> bool:
    """Whether the model scales pixel values itself (``Rescaling(1/255)``, as Keras' image
    tutorials build it): then it was trained on 0-255 values."""
    import keras

    return any(isinstance(layer, keras.layers.Rescaling) and np.all(np.asarray(layer.scale) < 0.1)
               for layer in model._flatten_layers(include_self=False))


def with_pixels(info: ModelInfo, pixels: Optional[str], where: str) -> ModelInfo:
    """``info`` with the pixel scale the user gave (``--pixels``/``pixels=``), or as it is.

    Raises:
        ConfigError: a scale other than ``unit`` or ``raw``.
    """
    if pixels is None:
        return info
    if pixels not in ("unit", "raw"):
        raise ConfigError(f"--pixels {pixels}: choose unit (pixels / 255, in [0, 1]) or raw (0-255 values)")
    return dataclasses.replace(info, pixels=pixels, pixels_guess="")


def warn_guessed_pixels(info: ModelInfo, where: str) -> None:
    """One warning line for a model whose pixel scale is a guess (never a silent one)."""
    if not info.pixels_guess:
        return
    from mnist_core.errors import command_line_words, from_python, python_words

    fed = "floats in [0, 1] (pixels / 255)" if info.pixels == "unit" else "0-255 values"
    message = (f"{where}: the model carries no record of the pixel scale it was trained on; it is fed {fed} "
               f"({info.pixels_guess}); give --pixels unit or --pixels raw to say which")
    print(f"warning: {python_words(message) if from_python() else message}", file=sys.stderr, flush=True)


def model_info(path: Path, model=None) -> ModelInfo:
    """What using the model at ``path`` needs: written into it, else its run's summary,
    else guessed from ``model`` (its input layer and outputs) with MNIST's classes."""
    info = read_model_info(path) or _info_from_summary(run_summary(path))
    if info is not None:
        return info
    return guess_info(model) if model is not None else ModelInfo()


def guess_info(model, input_shape: Optional[Sequence[int]] = None) -> ModelInfo:
    """A :class:`ModelInfo` read off a model: its declared or own input shape and its output kind."""
    from mnist_core import models as model_lib
    from mnist_core.models import outputs as model_outputs

    shape = tuple(input_shape) if input_shape is not None else \
        model_lib.input_shape_of(model, model_lib.spec_for(model))
    declared = getattr(model, "mnist_info", None)
    if isinstance(declared, ModelInfo):
        return declared
    outputs = model_outputs.output_kind(model, shape)
    classes = model_outputs.output_width(model, shape)
    # The images the model's input holds: (H, W, C) as it is, or a square grey one when flat.
    if len(shape) == 3:
        image = shape[:2] if shape[2] == 1 else shape
    else:
        side = int(round(float(np.prod(shape)) ** 0.5))
        image = (side, side)
    raw = _has_rescaling(model)
    guess = "it has a Rescaling layer: 0-255 values" if raw else "no Rescaling layer: [0, 1], as Keras' MNIST examples"
    return ModelInfo(input_shape=shape, outputs=outputs, class_names=tuple(str(i) for i in range(classes)),
                     image_shape=tuple(image), pixels="raw" if raw else "unit", pixels_guess=guess)


# --------------------------------------------------------------------------- saving


def save_keras_model(model, path: Path, info: ModelInfo) -> Path:
    """Writes ``model`` to ``path`` (``.keras`` or ``.h5``) with ``info`` in it, atomically.

    Raises:
        WriteError: the file cannot be written; what was at ``path`` is intact.
    """
    from mnist_core.files import write_atomically

    def write(tmp: Path) -> None:
        if tmp.suffix == ".h5":
            import h5py
            from absl import logging as absl_logging

            # Keras warns that HDF5 is a legacy format: asked for by name (--export-h5,
            # beside model.keras), the file is what the user wants, not news to them.
            level = absl_logging.get_verbosity()
            absl_logging.set_verbosity(absl_logging.ERROR)
            try:
                model.save(tmp, include_optimizer=False)
            finally:
                absl_logging.set_verbosity(level)
            with h5py.File(tmp, "a") as f:
                f.attrs[INFO_ATTRIBUTE] = info.to_json()
            return
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(INFO_ENTRY, info.to_json())

    return write_atomically(Path(path), write)


def _serving_fn(model, info: ModelInfo):
    import tensorflow as tf

    from mnist_core.models.outputs import as_logits

    def serve(images):
        outputs = model(normalize_images(images, info.input_shape, info.pixels), training=False)
        # A softmax layer leaves its inputs on its output tensor, and Keras' cross-entropy
        # uses them: the loss of saturated probabilities is then the exact one, not one
        # clipped at epsilon. The same logits make evaluate's loss Keras' own.
        keras_logits = getattr(outputs, "_keras_logits", None)
        if info.outputs == "softmax" and keras_logits is not None:
            logits = tf.cast(keras_logits, tf.float32)
        else:
            logits = as_logits(outputs, info.outputs)
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


def _image_spec(info: ModelInfo):
    import tensorflow as tf

    return tf.TensorSpec([None, *info.image_shape], tf.uint8, name="images")


def _is_our_savedmodel(path: Path) -> bool:
    """A SavedModel of mnist_core's: its serving signature takes uint8 images, gives logits."""
    if not is_savedmodel(path):
        return False
    try:
        _load_savedmodel(path)
    except ModelError:
        return False
    return True


def export_savedmodel(model, input_shape: Sequence[int], path: Path, info: Optional[ModelInfo] = None, *,
                      overwrite: bool = False) -> Path:
    """Writes ``model`` as a SavedModel whose default signature takes uint8 images
    ``[N, *info.image_shape]`` (``[N, 28, 28]`` for MNIST).

    Args:
        model: A trained Keras model (built).
        input_shape: The shape of one model input example, e.g. ``(784,)``.
        path: The directory to write. An earlier SavedModel of mnist_core there is replaced;
            anything else (a directory of other files) only with ``overwrite``.
        info: What using the model needs (dataset, classes, pixels, outputs); default: read
            off the model, with MNIST's classes.
        overwrite: Replace whatever is at ``path``.

    Returns:
        ``path``.

    Raises:
        ConfigError: ``path`` holds something else and ``overwrite`` is not set.
    """
    import keras
    import tensorflow as tf

    path = Path(path)
    if path.exists() and not overwrite:
        if not path.is_dir():
            raise ConfigError(f"{path}: exists and is not a directory; not replaced (pass overwrite=True)")
        if any(path.iterdir()) and not _is_our_savedmodel(path):
            raise ConfigError(f"{path}: a directory of other files, not a SavedModel of mnist_core; not replaced "
                              "(choose another path, or pass overwrite=True)")
    info = info or guess_info(model, input_shape)
    if tuple(info.input_shape) != tuple(input_shape):
        info = dataclasses.replace(info, input_shape=tuple(input_shape))
    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint also becomes "serving_default", the one TF Serving calls.
    archive.add_endpoint(name="serve", fn=_serving_fn(model, info), input_signature=[_image_spec(info)])
    archive.add_endpoint(name="regularization_loss", fn=lambda: {"loss": _regularization(model)},
                         input_signature=[])
    text = info.to_json()
    archive.add_endpoint(name=INFO_SIGNATURE, fn=lambda: {"info": tf.constant(text)}, input_signature=[])
    from mnist_core.files import write_atomically

    # Written beside the target and renamed into place: an interrupted export never
    # leaves a half-written SavedModel where a server would load it.
    return write_atomically(path, lambda tmp: archive.write_out(str(tmp), verbose=False))


# --------------------------------------------------------------------------- using


def as_pixels(images, where: str = "images", image_shape: Sequence[int] = (IMAGE_SIZE, IMAGE_SIZE)) -> np.ndarray:
    """uint8 ``[N, *image_shape]`` pixels from uint8 pixels, floats in [0, 1] (scaled and
    rounded to 8 bits) or floats over 1 (0-255 values, rounded), shaped
    ``[N, *image_shape]``, with a channel axis of 1 (``[N, 28, 28, 1]``) or flat
    (``[N, 784]``); an empty stack is ``[0, *image_shape]``.

    Raises:
        DataError: naming ``where`` and what is wrong (values out of 0-255, shape, NaN).
    """
    image_shape = tuple(image_shape)
    images = np.asarray(images)
    if images.ndim >= 1 and len(images) == 0:
        return np.zeros((0, *image_shape), np.uint8)
    if images.ndim == 2 and images.shape[1] == int(np.prod(image_shape)):
        images = images.reshape(-1, *image_shape)
    from mnist_core.data.arrays import _array_images

    pixels = _array_images(images, where)
    if pixels.shape[1:] != image_shape:
        raise DataError(f"{where} are {'x'.join(map(str, pixels.shape[1:]))} images; the model takes "
                        f"{'x'.join(map(str, image_shape))}")
    if pixels.dtype == np.uint8:
        return pixels
    scale = 1.0 if float(pixels.max(initial=0.0)) > 1.0 else 255.0
    return np.round(pixels * scale).astype(np.uint8)


class Classifier:
    """A trained model that maps uint8 images ``[N, 28, 28]`` to logits and probabilities.

    Use :func:`load_classifier` or :func:`classifier_for` to make one.

    Attributes:
        path: Where the model was loaded from.
        format: ``keras``, ``h5`` or ``savedmodel``.
        info: What the model was trained on and how it is fed (:class:`ModelInfo`).
        regularization_loss: The model's regularisation term (``sum(model.losses)``), which
            the training run adds to its reported loss.
    """

    def __init__(self, path: Path, fmt: str, fn, info: ModelInfo, regularization_loss: float = 0.0):
        self.path = path
        self.format = fmt
        self._fn = fn
        self.info = info
        self.regularization_loss = regularization_loss

    def logits(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """float32 logits ``[N, 10]`` of images (uint8, or floats in [0, 1]), computed in batches."""
        import tensorflow as tf

        images = as_pixels(images, image_shape=self.info.image_shape)
        out = [self._fn(tf.constant(images[i:i + batch_size]))["logits"].numpy()
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.info.class_names)), np.float32)

    def probabilities(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Class probabilities ``[N, 10]`` of images (uint8, or floats in [0, 1])."""
        return softmax(self.logits(images, batch_size))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64."""
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _load_savedmodel(path: Path):
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
        fn = loaded.signatures[SIGNATURE]
    except Exception as e:
        raise ModelError(f"--model-path {path}: cannot load the SavedModel "
                         f"({type(e).__name__}: {brief(e, 200)})") from None
    inputs = fn.structured_input_signature[1]
    if "images" not in inputs or "logits" not in fn.structured_outputs:
        raise ModelError(f"--model-path {path}: not an mnist_core export (its {SIGNATURE} signature "
                         "lacks the uint8 'images' input or the 'logits' output)")
    return loaded, fn


def load_classifier(path: Path, input_shape: Optional[Sequence[int]] = None, pixels: Optional[str] = None,
                    imports: Sequence[str] = ()) -> Classifier:
    """Loads a saved model: ``RUN/model.keras``, a ``.h5`` file or an exported SavedModel directory.

    Args:
        path: A ``.keras`` or ``.h5`` file, or a SavedModel directory.
        input_shape: The model's input example shape; default: what the model carries,
            else the run's ``summary.json``, else the model's own input shape.
        pixels: ``unit`` or ``raw``: the pixel scale the model was trained on, for a model
            that does not record it (one saved by plain Keras); default: the recorded one,
            else a guess said in a warning.
        imports: Modules to import first (``--import``): where the model's own classes are
            registered for Keras to load them. The module of the run's ``--model`` is
            imported without asking.

    Raises:
        ConfigError: ``path`` does not exist.
        ModelError: ``path`` exists but is not a loadable model.
    """
    import tensorflow as tf

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--model-path {path}: no such file or directory")
    if path.is_dir() and not is_savedmodel(path):
        path = _model_of_run(path)
    if path.is_dir():
        if pixels is not None:
            raise ConfigError(f"--pixels {pixels}: {path} is a SavedModel, whose serving signature takes uint8 pixels "
                              "and scales them as the model was trained; drop --pixels")
        loaded, fn = _load_savedmodel(path)
        reg = 0.0
        if "regularization_loss" in loaded.signatures:
            reg = float(loaded.signatures["regularization_loss"]()["loss"])
        info = model_info(path)
        # Keep the loaded object alive with the function that uses its variables.
        return Classifier(path, "savedmodel", lambda images, _keep=loaded: fn(images=images), info, reg)
    import_model_modules(path, imports)
    model = load_keras_model(path)
    info = with_pixels(model_info(path, model), pixels, f"--model-path {path}")
    _check_classifier(info, f"--model-path {path}")
    warn_guessed_pixels(info, f"--model-path {path}")
    if input_shape is not None:
        info = dataclasses.replace(info, input_shape=tuple(input_shape))
    serve = tf.function(_serving_fn(model, info), input_signature=[_image_spec(info)])
    return Classifier(path, "h5" if path.suffix == ".h5" else "keras", serve, info,
                      regularization_loss=float(_regularization(model)))


# One Classifier per model object: its tf.function is traced once, not at every call.
_IN_MEMORY: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def classifier_for(model, input_shape: Optional[Sequence[int]] = None, pixels: Optional[str] = None) -> Classifier:
    """A :class:`Classifier` around a ``keras.Model`` in memory (as trained by ``mnist_core.train``).

    Args:
        model: Takes images of ``input_shape`` as it was trained (a run sets what it was
            trained on as ``model.mnist_info``); returns logits or probabilities.
        input_shape: Default: the model's ``mnist_input_shape``, else its input layer's
            shape, else ``(28, 28, 1)``.
    """
    import tensorflow as tf

    where = f"model= (a {type(model).__name__} object)"
    info = with_pixels(guess_info(model, input_shape), pixels, where)
    _check_classifier(info, where)
    cached = _IN_MEMORY.get(model)
    if cached is not None and cached.info == info:
        return cached
    serve = tf.function(_serving_fn(model, info), input_signature=[_image_spec(info)])
    classifier = Classifier(Path(f"<{type(model).__name__} in memory>"), "keras", serve, info,
                            regularization_loss=float(_regularization(model)))
    _IN_MEMORY[model] = classifier
    warn_guessed_pixels(info, where)
    return classifier


def import_model_modules(path: Path, imports: Sequence[str] = ()) -> None:
    """Imports what loading the model at ``path`` needs: the modules named by ``--import``,
    and the module of the model its run trained (``--model package.module:Name`` in its
    ``summary.json``), where a ``@keras.saving.register_keras_serializable`` class lives.

    Raises:
        ConfigError: an ``--import`` module that cannot be imported.
    """
    import importlib

    for name in imports:
        try:
            importlib.import_module(name)
        except Exception as e:
            raise ConfigError(f"--import {name}: cannot import it ({type(e).__name__}: {brief(e, 200)}); run from "
                              "the directory that holds it, or add that directory to PYTHONPATH") from None
    recorded = str(run_summary(path).get("model") or "")
    module = recorded.split(":", 1)[0] if ":" in recorded else ""
    if module and module != "__main__" and not recorded.startswith("python-object"):
        if "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, "")  # as `python -m mnist_core.train --model mymodule:Net` found it
        try:
            importlib.import_module(module)
        except Exception:  # not importable here: loading says what it lacks, and --import helps
            pass


def _check_classifier(info: ModelInfo, where: str) -> None:
    """Refuses a model that does not output class scores (recorded by the run that trained it)."""
    if info.outputs == "none":
        raise ModelError(f"{where}: the model is not a classifier (it was trained by its own train_step and does not "
                         "map images to class scores); evaluation and prediction need one")


def unsaveable(model) -> Optional[str]:
    """Why ``model`` cannot be written as a ``.keras`` file, or ``None`` when it can.

    Keras writes a model's ``get_config()``; a subclassed model whose ``__init__`` takes
    other models or objects (the Keras guides' Distiller, GAN, VAE) has none unless it
    writes one, and ``model.save`` fails only at the end of a run. Asked before training,
    so that the run can say what it will save instead.
    """
    from keras.src.saving import serialization_lib

    try:
        serialization_lib.serialize_keras_object(model)
    except Exception as e:  # Keras raises NotImplementedError, TypeError or ValueError here
        if "get_config" in str(e):
            return (f"{type(model).__name__} has no get_config(), and its __init__ takes objects Keras cannot "
                    "serialize")
        return f"{type(e).__name__}: {brief(e, 200)}"
    return None


def save_weights(model, path: Path) -> Path:
    """Writes ``model``'s weights to ``path`` (``*.weights.h5``) atomically.

    Raises:
        WriteError: the file cannot be written; what was at ``path`` is intact.
    """
    from mnist_core.files import write_atomically

    def write(tmp: Path) -> None:
        model.save_weights(tmp)

    return write_atomically(Path(path), write)


def _model_of_run(path: Path) -> Path:
    """The model a run directory holds (its ``model.keras`` or ``model.h5``, else ``saved_model/``), for a
    ``--model-path`` that names the run rather than the file.

    Raises:
        ModelError: the directory is neither, or the run could save its weights only.
    """
    for name in ("model.keras", "model.h5", SAVEDMODEL_DIR):
        if (path / name).exists():
            return path / name
    if (path / WEIGHTS_ONLY).exists():
        raise ModelError(f"--model-path {path}: this run saved its weights only ({WEIGHTS_ONLY}: the model could not "
                         f"be saved whole); {_REBUILD}")
    raise ModelError(f"--model-path {path}: a directory that is neither a SavedModel (no saved_model.pb) nor a run "
                     "with a saved model (no model.keras)")


def load_keras_model(path: Path):
    """Loads a ``.keras`` or ``.h5`` model (compile=False: only the weights and graph are needed).

    Raises:
        ConfigError: no such file.
        ModelError: not a Keras model file, or one Keras cannot rebuild (a custom class
            that is not importable, say).
    """
    import keras

    import mnist_core.models.example  # noqa: F401  registers the example model for loading

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--model-path {path}: no such file")
    if path.name.endswith(".weights.h5"):
        raise ModelError(f"--model-path {path}: {_REBUILD}")
    if path.suffix == ".h5":
        import h5py

        if not h5py.is_hdf5(path):
            raise ModelError(f"--model-path {path}: not an HDF5 file (damaged, or not a model saved as .h5)")
    elif not zipfile.is_zipfile(path):
        raise ModelError(f"--model-path {path}: not a Keras model file (a .keras file is a zip archive; this one is "
                         "damaged or something else)")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:
        hint = ""
        if "register_keras_serializable" in str(e) or "custom_objects" in str(e) or "Could not locate" in str(e):
            hint = ("; its class is the user's own: --import MODULE imports the module that registers it "
                    "(@keras.saving.register_keras_serializable)")
        raise ModelError(f"--model-path {path}: cannot load the model ({type(e).__name__}: {brief(e, 200)}){hint}") \
            from None


def classifier_of(model: Union[str, Path, object], pixels: Optional[str] = None,
                  imports: Sequence[str] = ()) -> Classifier:
    """A :class:`Classifier` for a path or an in-memory model."""
    if isinstance(model, (str, Path)):
        return load_classifier(Path(model), pixels=pixels, imports=imports)
    return classifier_for(model, pixels=pixels)


def predict_proba(model, images, *, batch_size: int = 512, preprocess: str = "auto",
                  pixels: Optional[str] = None) -> np.ndarray:
    """Class probabilities ``[N, classes]`` of images, prepared as ``mnist-predict`` prepares them.

    Args:
        model: A path (``RUN/model.keras``, a ``.h5`` file or a SavedModel directory) or a
            ``keras.Model``.
        images: A batch ``[N, H, W]``/``[N, H, W, C]``/``[N, H*W]`` or a list of images, uint8
            or floats (in [0, 1] or 0-255).
        batch_size: Images per forward pass.
        preprocess: ``auto`` (``mnist-predict``'s default: an image that already looks like
            the training data — the model's 28x28, light on a dark border, as a dataset's
            own — as it is; any other by the model's dataset's recipe: ``mnist``,
            ``fashion``, or ``resize`` for other images), or one of
            :func:`mnist_core.preprocess`'s (``mnist``, ``fashion``, ``resize``, ``none``).
            The same images give the same classes here and from ``mnist-predict``.
        pixels: ``unit`` or ``raw``, for a model that does not record its pixel scale.

    Raises:
        DataError: ``images`` are not such images (the message names ``images``).
    """
    from mnist_core import images as images_lib

    classifier = classifier_of(model, pixels=pixels)
    image_shape = tuple(classifier.info.image_shape)
    if preprocess != "none":
        images = images_lib.preprocess(images, preprocess, image_shape, where="predict_proba images",
                                       dataset=classifier.info.dataset)
    prepared = as_pixels(images, "predict_proba images", image_shape)
    return classifier.probabilities(prepared, batch_size)


def load_run_data(info: ModelInfo, summary: Dict, dataset: Optional[str] = None, data_dir: Optional[str] = None):
    """The test data to evaluate a model on: its own dataset, found where its run found it.

    Args:
        info: What the model was trained on.
        summary: Its run's ``summary.json`` (``{}`` when unknown), for the data's location.
        dataset: A dataset asked for explicitly; refused when the model was trained on another.
        data_dir: Where to load it from (default: the run's data directory, else the
            default sources).

    Raises:
        ConfigError: ``dataset`` differs from the one the model was trained on.
    """
    from mnist_core import data as data_lib

    if dataset and info.known_dataset and dataset != info.dataset and "synthetic" not in (dataset, info.dataset):
        raise ConfigError(f"--dataset {dataset}: the model was trained on {info.dataset} (its classes are "
                          f"{', '.join(info.class_names[:3])}, ...); evaluate it on {info.dataset}")
    config = summary.get("config", {})
    if summary.get("data_from_python") and not (dataset or data_dir):
        raise DataError(f"the model was trained on data passed from Python ({summary.get('dataset')}), which cannot "
                        "be loaded again by name; pass the test data (evaluate_model(model, data=(x_test, y_test))), "
                        "or --dataset/--data-dir")
    name = dataset or (info.dataset if info.known_dataset else config.get("dataset", "mnist"))
    data = data_lib.load(name, data_dir or config.get("data_dir"), seed=config.get("seed", 0),
                         synthetic_train_size=config.get("synthetic_train_size", 60000))
    if data.test_labels is None:
        # Data without a test split: the run held part of it out (--val-split), and the
        # same seed holds out the same examples here.
        data = data_lib.hold_out_test(data, float(config.get("val_split") or 0.0), int(config.get("seed", 42)))
    return data
