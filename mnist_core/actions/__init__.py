"""What the controller does between compiled loop calls: one small object per behaviour.

The epoch loop of :mod:`mnist_core.controller` is a plain loop: it asks every action how
many steps may run before it needs a boundary, runs that many in one compiled call,
evaluates at the end of an epoch, and hands each event to every action in order. Each
behaviour is one :class:`Action` in a file of its own here, the role TF Model Garden's
orbit gives its ``actions``; a new behaviour is a new action, not another branch in the
loop:

=====================  ===================================================================
``nonfinite``          :class:`NonFiniteGuard`: skipped updates warned, spoiled weights stop
``progress``           :class:`Progress`: the console
``keras_callbacks``    :class:`KerasCallbacks`: the user's Keras callbacks, as ``fit`` calls them
``history``            :class:`HistoryFile`: ``history.json``
``checkpoints``        :class:`Checkpoints`: at epoch ends and every ``--checkpoint-every``
``tensorboard``        :class:`TensorBoardSummaries`: scalars, graph, histograms
``profiler``           :class:`StepProfiler`: ``--profile-steps``
``target``             :class:`TargetAccuracy`: ``--target-accuracy``
``preemption``         :class:`Preemption`: multi_worker's coordinated checkpoint on SIGTERM
``signals``            :class:`Signals`: Ctrl-C and SIGTERM
=====================  ===================================================================
"""

from mnist_core.actions.base import Action
from mnist_core.actions.checkpoints import Checkpoints
from mnist_core.actions.history import HistoryFile
from mnist_core.actions.keras_callbacks import KerasCallbacks, epoch_logs
from mnist_core.actions.nonfinite import NonFiniteGuard
from mnist_core.actions.preemption import Preemption
from mnist_core.actions.profiler import StepProfiler
from mnist_core.actions.progress import Progress
from mnist_core.actions.signals import Signals
from mnist_core.actions.target import TargetAccuracy
from mnist_core.actions.tensorboard import TensorBoardSummaries

__all__ = ["Action", "Checkpoints", "HistoryFile", "KerasCallbacks", "NonFiniteGuard", "Preemption", "Progress",
           "Signals", "StepProfiler", "TargetAccuracy", "TensorBoardSummaries", "epoch_logs"]
