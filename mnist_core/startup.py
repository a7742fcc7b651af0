"""TensorFlow loaded quietly: the settings and the C++ log filter every entry point needs.

The command-line tools and the Python API's first call set these before TensorFlow loads.

Kept apart from :mod:`mnist_core.cli` so that the package's lazy loader can use it without
importing the command-line plumbing.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

def quiet_tensorflow_logs() -> None:
    """Hides TensorFlow's C++ INFO/WARNING chatter unless the user asked for it, and sets
    the TensorFlow defaults every command shares (Keras backend, GPU memory growth)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # mnist_core's loop is TensorFlow code: a KERAS_BACKEND=jax in the user's shell must
    # not switch Keras to another backend under it.
    os.environ["KERAS_BACKEND"] = "tensorflow"
    # Every command (train, evaluate, predict, benchmarks) takes GPU memory as it needs it,
    # so two of them can share a GPU (see strategy._grow_gpu_memory); the user's value wins.
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")


# What TensorFlow's C++ side prints while it loads and looks for devices, before absl
# logging is initialised (so TF_CPP_MIN_LOG_LEVEL cannot hide it), on every machine
# without a GPU: absl's notice, INFO lines (oneDNN, CPU features, "Could not find cuda
# drivers"), and the warnings/errors that only say CUDA or TensorRT is absent.
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] (.*)$")
_ABSENT_GPU = re.compile(r"cuInit|cuda drivers|CUDA|TensorRT|Unable to register cu(DNN|FFT|BLAS) factory|"
                         r"computation placer already registered|GPU will not be used")
_CPU_FEATURES = "To enable the following instructions:"
# Errors TensorFlow's C++ side logs during a run that say nothing the user can act on:
# a tf.data attribute its runtime does not know yet (with op determinism on), and oneDNN
# falling back from float16 kernels on a CPU without them (mnist_core says that itself,
# once, in its own words); and the TensorFlow Lite converter's warnings about options it
# sets itself (a run from Python shows warnings: TF_CPP_MIN_LOG_LEVEL is the user's there).
_RUN_NOISE = re.compile(r"NodeDef mentions attribute use_unbounded_threadpool|oneDNN supports DT_HALF only|"
                        r"GeneratorDatasetOp::Dataset will not be optimized|"
                        r"^Ignored (output_format|drop_control_dependency)\.$|"
                        r"^Skipping runtime version metadata in the model")
# Grappler, TensorFlow's graph optimiser, logs an error when one of its passes cannot
# rewrite a graph (the remapper on a GAN's step, say) and runs the graph unrewritten:
# nothing failed that the user could act on.
_GRAPPLER_PASS_FAILED = re.compile(r"\smeta_optimizer\.cc:\d+\] \w+ failed: ")
# TensorFlow Lite's converter (int8 calibration) and interpreter print these themselves, not
# through absl: the export's own line says what was written and how it scored.
_TFLITE_NOISE = re.compile(r"^(fully_quantize: \d+, inference_type: \d+, input_inference_type: |"
                           r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$)")


def is_startup_noise(line: str) -> bool:
    """True for a TensorFlow log line that says nothing about the user's run."""
    text = line.rstrip("\n")
    if not text.strip() or text == _ABSL_NOTICE or text.startswith(_CPU_FEATURES) or _TFLITE_NOISE.match(text):
        return True
    match = _ABSL_LINE.match(text)
    if match is None:
        return False
    level, message = match.groups()
    return (level == "I" or bool(_ABSENT_GPU.search(message)) or bool(_RUN_NOISE.search(message))
            or bool(_GRAPPLER_PASS_FAILED.search(text)))


def import_tensorflow():
    """Imports TensorFlow and finds its devices with the start-up noise filtered out of stderr.

    TensorFlow's C++ libraries write a few lines to file descriptor 2 while loading and
    while probing for CUDA, before absl logging exists, so neither ``TF_CPP_MIN_LOG_LEVEL``
    nor Python's logging reach them. The descriptor is pointed at a temporary file for
    the import and the device probe, and every line that is not known start-up noise is
    written back to stderr afterwards: genuine warnings and errors still show. Command-line
    tools call this once, after their flags are parsed, before anything else loads
    TensorFlow.
    """
    if "tensorflow" in sys.modules and getattr(import_tensorflow, "_done", False):
        return sys.modules["tensorflow"]
    quiet_tensorflow_logs()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not is_startup_noise(line)]
    if kept:
        sys.stderr.write("".join(kept))
        sys.stderr.flush()
    import_tensorflow._done = True
    return tf
