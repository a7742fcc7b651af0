"""NonFiniteGuard: report skipped updates, or stop before anything non-finite is saved."""

from __future__ import annotations

from mnist_core.actions.base import Action
from mnist_core.errors import NonFiniteLossError


class NonFiniteGuard(Action):
    """Warns about skipped updates, or stops the run before anything non-finite is saved.

    Skipping (``--on-nonfinite skip``, and mixed_float16's loss scaling by design) leaves
    weights and slots untouched, so training goes on. Anything else that is not finite —
    a NaN/Inf loss in ``stop`` mode, or weights that a non-finite update (or an
    overflowing finite one) has already spoiled — stops the run without saving. It runs
    first at every loop end, so no later action checkpoints spoiled weights.
    """

    def on_loop_end(self, run, steps, result):
        if not (result["nonfinite"] or result["skipped"] or not result["weights_finite"]):
            return
        config = run.config
        span = f"steps {run.step - steps + 1}..{run.step}"
        skipping = config.precision == "mixed_float16" or config.on_nonfinite == "skip"
        if skipping and result["weights_finite"]:
            if result["skipped"]:
                run.reporter.warn(f"{int(result['skipped'])} update(s) with non-finite gradients skipped in {span}")
            if result["nonfinite"] > result["skipped"]:
                run.reporter.warn(f"{int(result['nonfinite'])} step(s) with a non-finite loss in {span} "
                                  "(left out of the reported loss)")
            return
        what = "loss (NaN/Inf)" if result["nonfinite"] else "weights (NaN/Inf) after an update"
        last = run.state.latest or "none (no checkpoint written yet)"
        run.reporter.end_epoch_progress()
        raise NonFiniteLossError(
            f"non-finite {what} within {span}; stopped without saving; last good checkpoint: {last} "
            "(resume with --resume, perhaps with a lower --lr, or use --on-nonfinite skip)"
        )
