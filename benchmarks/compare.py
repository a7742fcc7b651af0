"""``python -m benchmarks.compare``: training throughput of two code versions (or models), side by side.

Examples::

    # this working tree against a git commit, on the models without overrides
    python -m benchmarks.compare --ref e3ca5f4 --models mlp,cnn
    # mnist_core's explicit step against the Keras-protocol path, same architecture
    python -m benchmarks.compare --models mlp,benchmarks.protocol_models:mlp

The machine drifts by 10-30% over minutes, so a before/after pair timed minutes apart says
little. Here every round runs one fresh process per side (the ``--ref`` commit, checked
out with ``git worktree``, and this tree), alternating which goes first, and each process
times every model in turn; the ratio reported is the median over rounds of each round's
ratio, with its range. The loop is driven as the controller drives it
(``program.make_program``, ``program.train_loop`` with ``--steps-per-loop`` steps per
call) on synthetic data, so the figures are the loop's alone.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from mnist_core import cli
from mnist_core.errors import MnistCoreError

PROG = "benchmarks.compare"
REPO = Path(__file__).resolve().parent.parent

# Runs in a child process inside one tree; uses only what every version of mnist_core has.
CHILD = r"""
import json, sys, time
try:
    from mnist_core.cli import import_tensorflow
    import_tensorflow()
except ImportError:  # an older tree
    pass
import keras, tensorflow as tf
from mnist_core import data as data_lib, precision
from mnist_core.config import TrainConfig
try:
    from mnist_core.program import make_program
except ImportError:  # a tree from before the program had a module of its own
    from mnist_core.controller import make_program

models, batch, spl, seconds, jit, prec = json.loads(sys.argv[1])
data = data_lib.synthetic(20000, seed=0)
for name in models:
    config = TrainConfig(model=name, batch_size=batch, steps_per_loop=spl, jit_compile=jit, precision=prec,
                         quiet=True)
    keras.utils.set_random_seed(0)
    with precision.policy(prec):
        program = make_program(config, tf.distribute.get_strategy(), data.num_train)
        iterator = program.train_iterator(data)

        def run(calls):
            for _ in range(calls):
                float(program.train_loop(iterator, tf.constant(spl, tf.int32))["count"])

        run(2)  # tracing and compilation
        started = time.perf_counter()
        run(1)
        calls = max(1, int(seconds / max(time.perf_counter() - started, 1e-6)))
        started = time.perf_counter()
        run(calls)
        elapsed = time.perf_counter() - started
    print(json.dumps({"model": name, "images_per_second": calls * spl * batch / elapsed}), flush=True)
"""


def _checkout(ref: str) -> Path:
    """A detached worktree of ``ref`` in a temporary directory."""
    where = Path(tempfile.mkdtemp(prefix="mnist_core_ref_")) / "tree"
    result = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), ref],
                            capture_output=True, text=True)
    if result.returncode:
        raise MnistCoreError(f"--ref {ref}: git worktree failed ({result.stderr.strip()[:200]})")
    return where


def _remove(tree: Path) -> None:
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
    shutil.rmtree(tree.parent, ignore_errors=True)


def _measure(tree: Path, models: List[str], args) -> Dict[str, float]:
    payload = json.dumps([models, args.batch_size, args.steps_per_loop, args.window_seconds, args.jit,
                          args.precision])
    env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", CHILD, payload], cwd=tree, capture_output=True, text=True,
                            env=env)
    if result.returncode:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise MnistCoreError(f"measuring in {tree} failed: {lines[-1] if lines else result.returncode}")
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {row["model"]: row["images_per_second"] for row in rows}


def compare(args) -> List[Dict]:
    sides: Dict[str, Path] = {}
    ref_tree: Optional[Path] = None
    if args.ref:
        ref_tree = _checkout(args.ref)
        sides[args.ref] = ref_tree
    sides["this tree"] = REPO
    try:
        samples: Dict[str, Dict[str, List[float]]] = {side: {m: [] for m in args.models} for side in sides}
        order = list(sides)
        for round_index in range(args.rounds):
            for side in (order if round_index % 2 == 0 else order[::-1]):
                # A --ref tree may not have the module of a module:Name model: registered names only.
                models = [m for m in args.models if side == "this tree" or ":" not in m]
                for model, ips in _measure(sides[side], models, args).items():
                    samples[side][model].append(ips)
            print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        if ref_tree is not None:
            _remove(ref_tree)
    records = []
    for side, by_model in samples.items():
        for model, values in by_model.items():
            if values:
                records.append({"side": side, "model": model, "median": statistics.median(values),
                                "samples": values})
    baseline = args.ref
    for model in args.models:
        pairs = []
        if baseline and samples[baseline][model]:
            pairs.append((f"{model}: this tree / {baseline}", samples["this tree"][model], samples[baseline][model]))
        for other in args.models:
            if other != model and ":" in model and other == model.split(":")[-1]:
                pairs.append((f"{model} / {other}", samples["this tree"][model], samples["this tree"][other]))
        for name, ours, theirs in pairs:
            ratios = [a / b for a, b in zip(ours, theirs)]
            records.append({"ratio": name, "median": statistics.median(ratios), "samples": ratios})
    return records


def build_parser():
    p = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--ref", help="a git commit to compare this tree with")
    p.add_argument("--models", type=lambda t: [m for m in t.split(",") if m], default=["mlp", "cnn"],
                   help="registered names or module:Name (default mlp,cnn); a module:Name whose attribute is a "
                        "registered name is also compared with that name")
    p.add_argument("--batch-size", dest="batch_size", type=cli.positive_int, default=128)
    p.add_argument("--steps-per-loop", dest="steps_per_loop", type=cli.positive_int, default=100)
    p.add_argument("--rounds", type=cli.positive_int, default=5)
    p.add_argument("--window-seconds", dest="window_seconds", type=float, default=5.0)
    p.add_argument("--jit", action="store_true", help="compile with XLA")
    p.add_argument("--precision", default="float32")
    p.add_argument("--json", metavar="PATH", help="also write the records as JSON lines")
    return p


def main(argv=None) -> int:
    cli.quiet_tensorflow_logs()
    args = build_parser().parse_args(argv)

    def body():
        records = compare(args)
        for record in records:
            if "ratio" in record:
                low, high = min(record["samples"]), max(record["samples"])
                print(f"{record['ratio']}: {record['median']:.3f}x [{low:.3f}-{high:.3f}] over "
                      f"{len(record['samples'])} rounds")
            else:
                print(f"{record['side']} {record['model']}: {record['median']:,.0f} img/s "
                      f"(rounds: {', '.join(f'{v:,.0f}' for v in record['samples'])})")
        if args.json:
            with open(args.json, "w") as f:
                for record in records:
                    f.write(json.dumps({**record, "config": {k: v for k, v in vars(args).items() if k != "json"}})
                            + "\n")

    return cli.run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
