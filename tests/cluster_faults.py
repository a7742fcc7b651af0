"""A lost worker on demand: a callback with which one task of a multi_worker job kills or
freezes itself at an epoch's end, as a crashed or partitioned node would stop.

``$CLUSTER_FAULT`` says which task, how and when: ``"worker 1 SIGKILL 2"`` (task type,
index, signal, 1-based epoch). Callbacks see an epoch's end before its checkpoint is
written, so the task stops with its peers about to save that epoch's checkpoint.
"""

import json
import os
import signal

import keras


def this_task():
    """``(type, index)`` of this process in its cluster: from $TF_CONFIG or SLURM's rank."""
    if os.environ.get("TF_CONFIG"):
        task = json.loads(os.environ["TF_CONFIG"])["task"]
        return task["type"], int(task["index"])
    return "worker", int(os.environ["SLURM_PROCID"])


class Fault(keras.callbacks.Callback):
    def __init__(self, task, signum, epoch):
        super().__init__()
        self.task, self.signum, self.epoch = task, signum, epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch and this_task() == self.task:
            os.kill(os.getpid(), self.signum)


def from_env():
    """The fault $CLUSTER_FAULT describes; none when it is unset (the resumed run)."""
    if not os.environ.get("CLUSTER_FAULT"):
        return keras.callbacks.Callback()
    task_type, index, name, epoch = os.environ["CLUSTER_FAULT"].split()
    return Fault((task_type, int(index)), getattr(signal, name), int(epoch))
