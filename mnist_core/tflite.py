"""``--export-tflite``: the trained model as a TensorFlow Lite flatbuffer, checked before it is kept.

Three conversions, as TensorFlow Lite offers them:

* ``float``: float32 weights and math, the Keras model's numbers to round-off;
* ``dynamic``: weights stored as int8 (a quarter of the size), activations in float;
* ``int8``: weights and activations int8, calibrated on a representative set of training
  images (what integer-only accelerators need); input and output stay float32, so a
  caller feeds it as it feeds the Keras model.

The converted model takes what the Keras model takes: float32 ``[N, *input_shape]``,
pixels scaled as the run trained (``pixels``: ``unit`` is pixels / 255, ``raw`` 0-255), and
returns the Keras model's outputs (logits or probabilities). Every export is run by
``tf.lite.Interpreter`` on test images beside the Keras model before it is written: the
accuracy of both and how often their classes agree go to ``summary.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

import numpy as np

MODES = ("float", "dynamic", "int8")
# Training images that calibrate the int8 activations' ranges (TensorFlow's guidance: a
# few hundred representative examples).
CALIBRATION_IMAGES = 300
# Test images the interpreter is checked on.
CHECK_IMAGES = 2000


def convert(model, input_shape: Sequence[int], mode: str, calibration: np.ndarray) -> bytes:
    """The TFLite flatbuffer of ``model`` in ``mode``; ``calibration``: float32 model inputs."""
    import tensorflow as tf

    # The converter freezes the variables that the object it is given tracks; Keras 3's
    # variables are tracked through a tf.Module holding the model, not through the model.
    holder = tf.Module()
    holder.model = model
    holder.variables_list = [v.value if hasattr(v, "value") else v for v in model.variables]
    holder.forward = tf.function(lambda images: model(images, training=False),
                                 input_signature=[tf.TensorSpec([None, *input_shape], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([holder.forward.get_concrete_function()], holder)
    if mode in ("dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        def representative():
            for image in calibration[:CALIBRATION_IMAGES]:
                yield [image[None].astype(np.float32)]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def run(flatbuffer: bytes, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The outputs of the TFLite model on float32 ``inputs``, through ``tf.lite.Interpreter``."""
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():
        # TensorFlow 2.21 announces the interpreter's move to ai_edge_litert on every use;
        # it is still TensorFlow's own, and the user's terminal shows mnist_core's lines.
        warnings.simplefilter("ignore", UserWarning)
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    entry = interpreter.get_input_details()[0]
    outputs = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start:start + batch_size].astype(np.float32)
        interpreter.resize_tensor_input(entry["index"], batch.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(entry["index"], batch)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy())
    return np.concatenate(outputs)


def export(model, input_shape: Sequence[int], mode: str, path: Path, calibration: np.ndarray,
           check_inputs: np.ndarray, check_labels: np.ndarray) -> Dict:
    """Converts, checks against the Keras model on ``check_inputs``, writes ``path`` atomically.

    Returns:
        ``{"path", "mode", "bytes", "examples", "accuracy", "keras_accuracy", "agreement",
        "max_abs_diff"}`` (classes compared by arg-max of the outputs).

    Raises:
        WriteError: the file cannot be written.
    """
    from mnist_core.files import write_atomically

    flatbuffer = convert(model, input_shape, mode, calibration)
    check_inputs = check_inputs[:CHECK_IMAGES]
    labels = np.asarray(check_labels[:CHECK_IMAGES])
    lite = run(flatbuffer, check_inputs)
    keras_out = np.concatenate([np.asarray(model(check_inputs[i:i + 512], training=False))
                                for i in range(0, len(check_inputs), 512)])
    write_atomically(Path(path), lambda tmp: tmp.write_bytes(flatbuffer))
    return {
        "path": str(path), "mode": mode, "bytes": len(flatbuffer), "examples": int(len(labels)),
        "accuracy": float((lite.argmax(1) == labels).mean()),
        "keras_accuracy": float((keras_out.argmax(1) == labels).mean()),
        "agreement": float((lite.argmax(1) == keras_out.argmax(1)).mean()),
        "max_abs_diff": float(np.max(np.abs(lite.astype(np.float64) - keras_out))),
    }
