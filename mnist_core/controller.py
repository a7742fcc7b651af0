"""Layer 3: the controller — a plain epoch loop in eager Python that hands its events to actions.

Between compiled loop calls everything is ordinary Python. :class:`Controller` asks the
actions (:mod:`mnist_core.actions`) how many steps may run before one of them needs a
boundary, runs that many in one call of the program's compiled loop
(:mod:`mnist_core.loop`), evaluates at epoch ends, and hands every event to every action in
order. It knows nothing of checkpoints, signals, callbacks or files: those are actions. A
new behaviour is a new action, not a branch here (the role of TF Model Garden's orbit
``Controller``).
"""

from __future__ import annotations

import time
from typing import Dict, List, Sequence

from mnist_core import optim
from mnist_core.actions import Action
from mnist_core.program import averaged_weights, timed_steps_per_loop, weights_digest
from mnist_core.run import EpochMeter, Run


def eval_fields(name: str, logs: Dict, count: int) -> Dict:
    """An evaluation of the ``name`` set as history.json's fields: ``test_loss``, ..., ``test_examples``."""
    return {**{f"{name}_{key}": value for key, value in logs.items()}, f"{name}_examples": count}


class Controller:
    """Runs a program's epochs from ``run.step`` to ``config.epochs``, telling the actions.

    Args:
        run: The run's state (program, position, history).
        actions: The behaviours, in the order each event reaches them.
        eval_sets: Distributed evaluation datasets by name (``test``, ``val``).
    """

    def __init__(self, run: Run, actions: Sequence[Action], eval_sets: Dict):
        self.run = run
        self.actions: List[Action] = list(actions)
        self.eval_sets = eval_sets

    def _tell(self, hook: str, *args) -> None:
        for action in self.actions:
            getattr(action, hook)(self.run, *args)

    def train(self, iterator) -> None:
        """Trains to the last epoch (or an early stop); ``close`` reaches every action even on failure."""
        run = self.run
        try:
            self._tell("on_train_begin")
            self._epochs(iterator)
            # As fit does before on_train_end: with --ema the model takes the average for good
            # (model.keras, the SavedModel); the checkpoints keep the trained weights and the
            # average, so a resumed run continues exactly.
            run.program.optimizer.finalize_variable_values(run.program.model.trainable_variables)
            self._tell("on_train_end")
        finally:
            for action in reversed(self.actions):
                action.close(run)

    def _epochs(self, iterator) -> None:
        """The epoch loop: run steps to the next boundary, evaluate at epoch ends, tell the actions."""
        run, program = self.run, self.run.program
        first_call = True
        # --steps-per-loop 0: the first timed call of full length sets the calls' length by
        # time. Not under multi_worker, where every worker must make the same calls.
        timing = run.config.steps_per_loop == 0 and run.config.strategy != "multi_worker"
        for epoch in range(run.epoch, run.config.epochs):
            run.epoch = epoch
            run.epoch_step = run.step - epoch * program.steps_per_epoch
            run.meter = EpochMeter(program)
            if program.keras_protocol:
                program.model.reset_metrics()  # as fit does at every epoch's start
            epoch_started = time.perf_counter()
            self._tell("on_epoch_begin", epoch)
            while run.epoch_step < program.steps_per_epoch and run.stop_reason is None:
                limits = [program.steps_per_loop, program.steps_per_epoch - run.epoch_step]
                limits += [n for n in (a.steps_until_boundary(run) for a in self.actions) if n]
                steps = min(limits)
                self._tell("on_loop_begin", steps)
                t0 = time.perf_counter()
                result = program.run_steps(iterator, steps)
                seconds = time.perf_counter() - t0
                # The first call of the run includes tracing/compilation: not timed.
                run.meter.add(result, steps, None if first_call else seconds)
                if timing and not first_call and steps == program.steps_per_loop:
                    program.steps_per_loop = timed_steps_per_loop(seconds / steps, program.steps_per_epoch)
                    timing = False
                first_call = False
                run.step += steps
                run.epoch_step += steps
                self._tell("on_loop_end", steps, result)
            run.timed_images += run.meter.images
            run.timed_seconds += run.meter.seconds
            entry = self._evaluate_epoch(epoch, epoch_started)
            run.history.append(entry)
            self._tell("on_epoch_end", epoch, entry)
            if run.stop_reason is not None:
                run.reporter.info(run.stop_reason)
                break

    def _evaluate_epoch(self, epoch: int, epoch_started: float) -> Dict:
        """The epoch's history entry; evaluated on every ``--eval-every``-th epoch, the run's
        last, and one that ends the run early."""
        run = self.run
        program, config = run.program, run.config
        train_seconds = time.perf_counter() - epoch_started
        entry: Dict = {"epoch": epoch + 1}
        for key, value in run.meter.final_logs().items():
            entry[f"train_{key}"] = value
        evaluate = ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs
                    or run.stop_reason is not None)
        eval_started = time.perf_counter()
        with averaged_weights(program):
            for name, dataset in (self.eval_sets.items() if evaluate else ()):
                self._tell("on_evaluate_begin", name)
                logs, count = program.evaluate(dataset)
                entry.update(eval_fields(name, logs, count))
                self._tell("on_evaluate_end", name, logs)
            # The weights evaluated: with --ema the average, which model.keras will hold.
            run.last_eval_digest = weights_digest(program.model)
        entry["learning_rate"] = optim.current_learning_rate(program.optimizer)
        entry["images_per_second"] = run.meter.images_per_second
        entry["seconds"] = time.perf_counter() - epoch_started
        entry["train_seconds"] = train_seconds
        entry["eval_seconds"] = time.perf_counter() - eval_started
        entry["step"] = run.step
        entry["elapsed_seconds"] = time.perf_counter() - run.started
        return entry
