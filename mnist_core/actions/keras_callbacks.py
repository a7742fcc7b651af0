"""KerasCallbacks: the user's Keras callbacks, called with ``model.fit``'s contract."""

from __future__ import annotations

from typing import Dict, List

from mnist_core.actions.base import Action
from mnist_core.errors import CallbackError, MnistCoreError, brief


class KerasCallbacks(Action):
    """The user's ``keras.callbacks.Callback`` objects, called with ``model.fit``'s contract.

    * ``set_model``/``set_params`` (``epochs``, ``steps``, ``verbose=0``) before training;
      a ``History`` is added, so ``model.history`` holds the epoch logs as after ``fit``;
    * ``on_train_begin``/``on_train_end``; ``on_epoch_begin``/``on_epoch_end`` with logs
      ``loss``, ``accuracy`` (or whatever a custom ``train_step`` returns) and the
      evaluation metrics under history.json's names (``test_loss``, ``val_accuracy``...);
    * ``on_train_batch_begin``/``on_train_batch_end`` once per compiled loop call, with the
      first and last step's index in the epoch, as ``fit`` does with
      ``steps_per_execution``; the logs' ``loss`` is NaN if a step of the call had a
      non-finite loss, so ``TerminateOnNaN`` works also when such steps are skipped;
    * ``on_test_begin``/``on_test_batch_*``/``on_test_end`` around every evaluation;
    * ``model.stop_training = True`` is read after every loop call and epoch.

    An exception in a callback stops the run with one line naming the callback and hook.
    """

    def __init__(self, callbacks: List, model, params: Dict):
        import keras

        self.user = list(callbacks)
        self.model = model
        self.list = keras.callbacks.CallbackList(self.user, add_history=True, add_progbar=False, model=model,
                                                 **params)
        self._begun = False

    def _call(self, hook: str, *args) -> None:
        try:
            getattr(self.list, hook)(*args)
        except MnistCoreError:
            raise
        except Exception as e:
            raise CallbackError(f"callback {self._culprit(e)}.{hook} raised {type(e).__name__}: "
                                f"{brief(e, 300)}") from None

    def _culprit(self, error: Exception) -> str:
        """The class name of the innermost callback on the exception's traceback."""
        ours = {id(callback) for callback in self.list.callbacks}
        name = "?"
        tb = error.__traceback__
        while tb is not None:
            owner = tb.tb_frame.f_locals.get("self")
            if id(owner) in ours:
                name = type(owner).__name__
            tb = tb.tb_next
        return name

    def _check_stop(self, run, where: str) -> None:
        if getattr(self.model, "stop_training", False):
            run.request_stop(f"a callback set model.stop_training after {where}; stopping")

    def on_train_begin(self, run):
        self.model.stop_training = False
        self._call("on_train_begin", {})
        self._begun = True

    def on_epoch_begin(self, run, epoch):
        self._call("on_epoch_begin", epoch, {})

    def on_loop_begin(self, run, steps):
        self._call("on_train_batch_begin", run.epoch_step, {})

    def on_loop_end(self, run, steps, result):
        logs = dict(run.meter.logs())
        if result.get("nonfinite"):
            logs["loss"] = float("nan")
        self._call("on_train_batch_end", run.epoch_step - 1, logs)
        self._check_stop(run, f"step {run.step}")

    def on_evaluate_begin(self, run, name: str) -> None:
        self._call("on_test_begin", {})
        self._call("on_test_batch_begin", 0, {})

    def on_evaluate_end(self, run, name: str, logs: Dict) -> None:
        self._call("on_test_batch_end", 0, logs)
        self._call("on_test_end", logs)

    def on_epoch_end(self, run, epoch, entry):
        self._call("on_epoch_end", epoch, epoch_logs(entry))
        self._check_stop(run, f"epoch {epoch + 1}")

    def on_train_end(self, run):
        if self._begun:
            self._begun = False
            logs = epoch_logs(run.history[-1]) if run.history else {}
            self._call("on_train_end", logs)


def epoch_logs(entry: Dict) -> Dict[str, float]:
    """A history.json entry as ``fit``'s epoch logs.

    Training metrics under their own names (``loss``, ``accuracy``), evaluation metrics
    under history.json's (``test_loss``, ``val_accuracy``). Without a validation split,
    the test metrics are also given as ``val_*``: the tutorials' ``fit(...,
    validation_data=(x_test, y_test))`` reports the test set under those names, and
    callbacks default to monitoring ``val_loss``.
    """
    skip = {"epoch", "learning_rate", "images_per_second", "seconds", "step", "elapsed_seconds",
            "train_seconds", "eval_seconds"}
    logs = {}
    for key, value in entry.items():
        if key in skip or key.endswith("_examples") or not isinstance(value, (int, float)):
            continue
        logs[key[len("train_"):] if key.startswith("train_") else key] = value
    if "val_examples" not in entry:
        logs.update({f"val_{key[len('test_'):]}": value for key, value in list(logs.items())
                     if key.startswith("test_")})
    return logs
