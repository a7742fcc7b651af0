"""``python -m benchmarks.profile``: where a training step's time goes, per steps-per-loop.

Runs mnist_core's loop (as the controller does, via ``program.make_program``) under the
TensorFlow profiler for each ``--steps-per-loop`` value, writes the traces (open them in
TensorBoard's Profile tab: ``tensorboard --logdir LOGDIR``), and reads them back to split
the wall time of a step into:

* **graph** — time inside the compiled loop function (``EagerLocalExecute`` of
  ``train_loop``): the step's math plus the in-graph loop and input ops;
* **outside** — everything else per step: Python dispatch of the call, argument
  conversion, reading the result back, the controller's bookkeeping. This is the part
  that running more steps per call can remove.

The best possible gain from ``--steps-per-loop`` is then ``wall / graph`` at 1 step per
call. It also lists the ops that take the most thread time inside the graph.

    python -m benchmarks.profile --model mlp --batch-size 128 --steps-per-loop 1,100
"""

from __future__ import annotations

import collections
import glob
import os
import sys
import tempfile
import time
from typing import Dict, List, Optional

from mnist_core import cli


def parse_args(argv):
    p = cli.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mlp")
    p.add_argument("--batch-size", dest="batch_size", type=cli.positive_int, default=128)
    p.add_argument("--steps-per-loop", dest="steps_per_loop", default="1,100", metavar="LIST")
    p.add_argument("--steps", type=cli.positive_int, default=200, help="profiled steps per setting (default 200)")
    p.add_argument("--jit", action="store_true", help="XLA-compile the step")
    p.add_argument("--data-dir", dest="data_dir", metavar="DIR",
                   help="IDX data (default ../shared/data/fashion-mnist, else synthetic)")
    p.add_argument("--logdir", metavar="DIR", help="where the traces go (default: a temporary directory)")
    p.add_argument("--top-ops", dest="top_ops", type=int, default=6)
    args = p.parse_args(argv)
    try:
        args.steps_per_loop = [int(x) for x in args.steps_per_loop.split(",")]
        assert all(x > 0 for x in args.steps_per_loop)
    except (ValueError, AssertionError):
        p.error(f"--steps-per-loop: expected positive integers like 1,100, got {args.steps_per_loop!r}")
    return args


def read_trace(path: str) -> Dict:
    """Sums of a profiler XSpace: graph-execution time, call count, op thread time by name."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    executes_ps = calls = 0
    ops = collections.Counter()
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if line.name == "python":
                for event in line.events:
                    name = names.get(event.metadata_id, "")
                    if name.startswith("EagerLocalExecute") and "train_loop" in name:
                        executes_ps += event.duration_ps
                        calls += 1
            elif line.name.startswith("tf_Compute") or line.name.startswith("tf_inter_op"):
                for event in line.events:
                    name = names.get(event.metadata_id, "")
                    if not name.startswith("ExecutorState"):  # a wrapper around the ops below it
                        ops[name] += event.duration_ps
    return {"graph_seconds": executes_ps / 1e12, "calls": calls,
            "ops": {k: v / 1e12 for k, v in ops.items()}}


def profile_setting(data, model: str, batch_size: int, spl: int, steps: int, jit: bool, logdir: str) -> Dict:
    import keras
    import tensorflow as tf

    from benchmarks.suites import core_config, run_steps
    from mnist_core.program import make_program

    config = core_config(model, batch_size, spl, jit, "float32", seed=42)
    keras.utils.set_random_seed(config.seed)
    program = make_program(config, tf.distribute.get_strategy(), data.num_train)
    iterator = program.train_iterator(data)

    def run(total):
        run_steps(program, iterator, spl, total)

    run(1)
    run(min(steps, max(spl, 20)))  # warm: traced, pipeline running
    started = time.perf_counter()
    run(steps)
    plain = (time.perf_counter() - started) / steps
    os.makedirs(logdir, exist_ok=True)
    tf.profiler.experimental.start(logdir)
    started = time.perf_counter()
    run(steps)
    profiled = (time.perf_counter() - started) / steps
    tf.profiler.experimental.stop()
    trace = read_trace(sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))[-1])
    graph = trace["graph_seconds"] / steps
    return {"spl": spl, "wall_ms": plain * 1e3, "profiled_wall_ms": profiled * 1e3, "graph_ms": graph * 1e3,
            "outside_ms": max(profiled - graph, 0.0) * 1e3, "calls": trace["calls"],
            "ops": {k: v / steps * 1e3 for k, v in trace["ops"].items()}}


def main(argv: Optional[List[str]] = None) -> int:
    cli.quiet_tensorflow_logs()
    args = parse_args(argv)

    def body():
        cli.import_tensorflow()
        from rich.table import Table

        from benchmarks.run import load_data
        from mnist_core.reporting import make_console

        console = make_console()
        data, _ = load_data(args.data_dir)
        logdir = args.logdir or tempfile.mkdtemp(prefix="mnist_core_profile_")
        console.print(f"data: {data.describe()}; traces in {logdir}", highlight=False, markup=False)
        results = [profile_setting(data, args.model, args.batch_size, spl, args.steps, args.jit,
                                   os.path.join(logdir, f"spl{spl}")) for spl in args.steps_per_loop]
        table = Table(title=f"{args.model}, batch {args.batch_size}: milliseconds per step")
        for column in ("steps/loop", "wall", "wall (profiled)", "in graph", "outside graph", "calls",
                       "img/s", "best gain from looping"):
            table.add_column(column, justify="right")
        for r in results:
            table.add_row(str(r["spl"]), f"{r['wall_ms']:.2f}", f"{r['profiled_wall_ms']:.2f}",
                          f"{r['graph_ms']:.2f}", f"{r['outside_ms']:.2f}", str(r["calls"]),
                          f"{args.batch_size / r['wall_ms'] * 1e3:,.0f}",
                          f"{r['profiled_wall_ms'] / r['graph_ms']:.2f}x" if r["graph_ms"] else "-")
        console.print(table)
        ops = Table(title=f"top ops by thread time, steps/loop {results[0]['spl']} (ms per step, summed over threads)")
        ops.add_column("op")
        ops.add_column("ms/step", justify="right")
        for name, ms in sorted(results[0]["ops"].items(), key=lambda kv: -kv[1])[: args.top_ops]:
            ops.add_row(name[-90:], f"{ms:.2f}")
        console.print(ops)
        return 0

    return cli.run_main("python -m benchmarks.profile", body)


if __name__ == "__main__":
    sys.exit(main())
