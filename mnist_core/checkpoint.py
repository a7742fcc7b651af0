"""Checkpoints of the complete training state, so a resumed run continues exactly.

What is saved: the model's weights, the optimizer (its slots exist because the optimizer
is built before the first save or restore), the global step, and the state of every
Keras ``SeedGenerator`` (Dropout masks). Keras' own tracking leaves the seed generators
out of ``tf.train.Checkpoint``, so a resumed run would draw different dropout masks; they
are added explicitly here.

The data order needs no saved iterator: the input pipeline is a pure function of the seed
and the global step (see ``mnist_core.data.train_dataset``'s ``skip_batches``), which is
exact on every strategy and keeps a 60k-example shuffle buffer out of every checkpoint.
``tf.train.CheckpointManager`` writes each checkpoint to new files and updates its index
last, so a kill during a write leaves the previous checkpoint intact.

A checkpoint is trusted only once it has been read: on resume every tensor of the newest
one is read back (TensorFlow checks each against its stored CRC32C), and one that is
truncated, overwritten, missing its data shard or its index is reported in one warning,
moved to ``checkpoints/damaged/`` and the next newest is tried. A save that fails (disk
full, permissions) removes its partial files and stops the run; the previous checkpoint
stays the newest.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
from typing import Callable, List, Optional, Tuple

import tensorflow as tf

from mnist_core.cluster import peer_failure
from mnist_core.errors import ConfigError, brief
from mnist_core.files import write_failed

CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "damaged"
_STEP = re.compile(r"ckpt-(\d+)$")


def _seed_variables(model):
    """The model's SeedGenerator states, keyed by their order in the model.

    Not by their path: Keras makes names unique per process (``seed_generator_5``), so a
    second model built in the same Python session (a notebook, a resume in-process) would
    not find its checkpoint's states by name. The order is the architecture's.
    """
    variables = {}
    for variable in model.variables:
        if "seed_generator" in variable.path:
            # tf.train.Checkpoint needs the backend tf.Variable, not Keras' wrapper.
            variables[f"seed_generator_{len(variables)}"] = getattr(variable, "value", variable)
    return variables


class CheckpointState:
    """The training state that a checkpoint saves and restores.

    Args:
        model: The Keras model (built).
        optimizer: The Keras optimizer (built, so its slot variables are tracked).
        directory: Where checkpoints go (the run's ``checkpoints/``).
        keep: Number of checkpoints kept.
        other_optimizers: The optimizers the model keeps besides ``model.optimizer`` (a
            GAN's ``d_optimizer`` and ``g_optimizer``), by attribute name: each is saved
            under its own name, so a resumed run continues every one of them.
    """

    def __init__(self, model, optimizer, directory: str, keep: int = 3, other_optimizers=None):
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        others = {f"optimizer_{name}": opt for name, opt in sorted((other_optimizers or {}).items())}
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=self.step,
                                              rng=_seed_variables(model), **others)
        # Absolute: TensorFlow joins the index's entries with the directory it is given, and
        # a relative one would be joined twice (see candidates).
        self.directory = os.path.abspath(directory)
        self.keep = keep
        self._manager: Optional[tf.train.CheckpointManager] = None

    @property
    def manager(self) -> tf.train.CheckpointManager:
        # Created at first use, not here: a manager reads the directory's index when
        # created, and the run directory is prepared (an --overwrite clears it) only
        # after the program is built and traced.
        if self._manager is None:
            self._manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=self.keep)
        return self._manager

    @property
    def latest(self) -> Optional[str]:
        return self.manager.latest_checkpoint

    def save(self, step: int, path_options: Optional[tf.train.CheckpointOptions] = None) -> str:
        """Saves the state at global ``step``; returns the checkpoint path.

        Raises:
            WriteError: the checkpoint could not be written (its partial files are removed;
                the previous checkpoint is still the newest).
            tf.errors.OpError: a ``multi_worker`` peer was lost during the save (partial
                files removed likewise; the trainer reports the lost peer).
        """
        self.step.assign(step)
        previous = self.latest
        try:
            return self.manager.save(checkpoint_number=step, options=path_options)
        except (tf.errors.OpError, OSError) as e:
            for partial in glob.glob(os.path.join(glob.escape(self.directory), f"ckpt-{step}[._]*")):
                shutil.rmtree(partial, ignore_errors=True) if os.path.isdir(partial) else _unlink(partial)
            if peer_failure(e) is not None:
                raise
            kept = f"the previous checkpoint {previous} is intact" if previous else "no checkpoint was written before"
            raise write_failed(f"checkpoint {os.path.join(self.directory, f'ckpt-{step}')}", e, kept) from None

    def save_once(self, step: int) -> str:
        """Saves at ``step`` unless the newest checkpoint already is that step; returns its path."""
        latest = self.latest
        if latest and latest.endswith(f"-{step}"):
            return latest
        return self.save(step)

    def _mismatch(self, path: str) -> Optional[str]:
        """Why checkpoint ``path`` cannot hold this run's state, compared before restoring.

        A restore that fails half-way leaves TensorFlow's "unrestored values" warnings to
        be printed when the program exits; comparing the variable names and shapes with
        this state's own (written to a scratch checkpoint) avoids starting one.
        """
        import tempfile

        with tempfile.TemporaryDirectory(prefix="mnist_core_layout_") as scratch:
            ours = _layout(self.checkpoint.write(os.path.join(scratch, "state")))
        return _describe_mismatch(ours, _layout(path))

    def restore_latest(self, directory: Optional[str] = None,
                       warn: Callable[[str], None] = lambda message: None) -> Tuple[int, str]:
        """Restores the newest complete checkpoint of ``directory`` (default: this state's own).

        Checkpoints that cannot be read completely are moved to ``damaged/`` and skipped, and
        reported through ``warn`` once a usable one is found (when none is, the one error
        lists them all).

        Returns:
            The global step of the restored checkpoint, and its path.

        Raises:
            ConfigError: no usable checkpoint exists, or the newest readable one does not
                match this model/optimizer.
        """
        directory = os.path.abspath(directory) if directory else self.directory
        damaged, warnings = [], []
        for path in candidates(directory):
            problem = verify(path)
            if problem:
                damaged.append(f"{os.path.basename(path)}: {problem}")
                moved = _quarantine(path, directory)
                warnings.append(f"checkpoint {path} is damaged ({problem}); moved it to {moved} and used the one "
                                "before")
                continue
            mismatch = self._mismatch(path)
            if mismatch is None:
                try:
                    self.checkpoint.restore(path).assert_existing_objects_matched()
                except (AssertionError, ValueError, tf.errors.OpError) as e:
                    mismatch = f"{type(e).__name__}: {brief(e, 200)}"
            if mismatch is not None:
                raise ConfigError(f"--resume: checkpoint {path} does not match this model/optimizer ({mismatch})")
            _point_index_at(directory, path)
            for message in warnings:
                warn(message)
            return int(self.step.numpy()), path
        if damaged:
            raise ConfigError(f"--resume: no usable checkpoint in {directory} ({'; '.join(damaged)})")
        raise ConfigError(f"--resume: no checkpoint in {directory}")


_NOT_STATE = ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE")


def _layout(path: str):
    return {name: tuple(shape) for name, shape in tf.train.list_variables(path) if name not in _NOT_STATE}


def _describe_mismatch(ours, theirs) -> Optional[str]:
    for name, shape in sorted(theirs.items()):
        if name in ours and ours[name] != shape:
            return f"{name} has shape {shape} in the checkpoint, {ours[name]} here"
    missing = sorted(set(ours) - set(theirs))
    extra = sorted(set(theirs) - set(ours))
    if missing:
        return f"{len(missing)} of this run's variables are not in the checkpoint, e.g. {missing[0]}"
    if extra:
        return f"the checkpoint has {len(extra)} variables this run lacks, e.g. {extra[0]}"
    return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _step_of(path: str) -> int:
    match = _STEP.search(path)
    return int(match.group(1)) if match else -1


def candidates(directory: str) -> List[str]:
    """Every checkpoint of ``directory``, newest first: those its ``checkpoint`` index names
    and those whose files are on disk (a damaged or missing index still leaves them)."""
    # Absolute, so that a checkpoint named by the index and found on disk is one path: the
    # index's relative entries come back joined with the directory TensorFlow was given, and
    # joining a relative directory again would name a second, nonexistent checkpoint.
    directory = os.path.abspath(directory)
    paths = set()
    with _tf_logs_quiet():  # a damaged index is reported by what resume does about it
        try:
            state = tf.train.get_checkpoint_state(directory)
        except Exception:  # an unreadable index file: the files on disk are what counts
            state = None
    if state is not None:
        for path in [*state.all_model_checkpoint_paths, state.model_checkpoint_path]:
            if path:
                paths.add(os.path.normpath(path if os.path.isabs(path) else os.path.join(directory, path)))
    for found in glob.glob(os.path.join(glob.escape(directory), "ckpt-*.index")) + glob.glob(
            os.path.join(glob.escape(directory), "ckpt-*.data-*")):
        paths.add(os.path.normpath(re.sub(r"\.(index|data-\d+-of-\d+)$", "", found)))
    return sorted((p for p in paths if _step_of(p) >= 0), key=_step_of, reverse=True)


def verify(path: str) -> Optional[str]:
    """Why checkpoint ``path`` cannot be read completely, or None if every tensor reads back."""
    if not os.path.exists(path + ".index"):
        return "its .index file is missing"
    shards = glob.glob(glob.escape(path) + ".data-*")
    if not shards:
        return "its data file is missing"
    match = re.search(r"of-(\d+)$", shards[0])
    if match and len(shards) < int(match.group(1)):
        return f"{int(match.group(1)) - len(shards)} of its {match.group(1)} data shards are missing"
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # truncated, overwritten, wrong CRC: TensorFlow's and Python's errors alike
        return f"{type(e).__name__}: {brief(e, 120)}"
    return None


def _quarantine(path: str, directory: str) -> str:
    """Moves a damaged checkpoint's files to ``damaged/`` (never deleted: they are the user's)."""
    target = os.path.join(directory, DAMAGED_DIR)
    os.makedirs(target, exist_ok=True)
    for file in glob.glob(glob.escape(path) + ".*"):
        os.replace(file, os.path.join(target, os.path.basename(file)))
    return target


@contextlib.contextmanager
def _tf_logs_quiet():
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _point_index_at(directory: str, path: str) -> None:
    """Rewrites the ``checkpoint`` index to the checkpoints that are still there, newest ``path``."""
    remaining = [p for p in reversed(candidates(directory)) if _step_of(p) <= _step_of(path)]
    with _tf_logs_quiet():
        try:
            state = tf.train.get_checkpoint_state(directory)
        except Exception:
            state = None
    current = [os.path.basename(p) for p in (state.all_model_checkpoint_paths if state else [])]
    if state is None or state.model_checkpoint_path != path or current != [os.path.basename(p) for p in remaining]:
        # Quiet: its deprecation notice addresses TensorFlow's users, not ours.
        with _tf_logs_quiet():
            try:
                tf.compat.v1.train.update_checkpoint_state(directory, os.path.basename(path),
                                                           [os.path.basename(p) for p in remaining])
            except (tf.errors.OpError, OSError):
                pass  # the files themselves are what resume reads; the index is a convenience


def has_checkpoint(run_dir: str) -> bool:
    """True if ``run_dir`` holds at least one checkpoint (verified when it is restored)."""
    return bool(candidates(os.path.join(run_dir, CHECKPOINT_DIR)))
