"""``python -m benchmarks.run``: throughput of mnist_core vs ``model.fit``, pipeline, scaling, TTA.

Examples::

    python -m benchmarks.run --quick                         # reduced grid, about 1.5 min on 2 cores
    python -m benchmarks.run --json results.jsonl            # the full grid
    python -m benchmarks.run --suite train,fit --models mlp --batch-sizes 128

Run it on an otherwise idle machine: every figure is a median over ``--repeats`` timed
windows after warm-up, but another busy process still skews them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

from mnist_core import cli

PROG = "benchmarks.run"
SUITES = ("pipeline", "train", "fit", "scaling", "tta")
# Only when asked for: peers needs the [peers] extra (PyTorch, JAX); tutorials trains the
# nine tutorial scripts twice per seed (about 10 minutes on 2 cores).
OPTIONAL_SUITES = ("peers", "tutorials")
INTERNAL_SUITES = ("epoch",)  # run by scaling in a fresh process
SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

# tta jobs: each fast recipe beside a tutorial model for the same data (the tutorial CNN of
# script 001b on MNIST, deep_mlp with Adam for 4 epochs on Fashion-MNIST), to the same
# targets, 3 seeds each; every run goes to its last epoch so that its final accuracy counts.
TTA_SEEDS = [1, 2, 3]
FULL_TTA = [
    {"name": "fast-mnist-cpu", "args": ["--config", "recipes/fast-mnist-cpu.toml"], "data": "mnist-5k",
     "targets": [0.965, 0.98, 0.985], "seeds": TTA_SEEDS},
    {"name": "tutorial-001b", "args": ["--config", "recipes/tutorial-001b.toml"], "data": "mnist-5k",
     "targets": [0.965, 0.98, 0.985], "seeds": TTA_SEEDS},
    {"name": "fast-fashion-cpu", "args": ["--config", "recipes/fast-fashion-cpu.toml"], "data": "fashion-mnist",
     "targets": [0.855, 0.90, 0.925], "seeds": TTA_SEEDS},
    {"name": "deep-mlp-fashion", "args": ["--dataset", "fashion_mnist", "--model", "deep_mlp", "--optimizer", "adam",
                                          "--epochs", "4"], "data": "fashion-mnist",
     "targets": [0.855, 0.90, 0.925], "seeds": TTA_SEEDS},
]
QUICK_TTA = [{"name": "mlp", "args": ["--model", "mlp", "--optimizer", "adam", "--epochs", "10"], "data": "mnist-5k",
              "targets": [0.9], "stop_at_target": True}]

def _list(kind):
    def parse(text: str):
        try:
            values = [kind(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"expected a comma-separated list, got {text!r}") from None
        if not values:
            raise ValueError("expected at least one value")
        return values
    parse.__name__ = f"list of {kind.__name__}"
    return parse


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise ValueError(f"expected on or off, got {text!r}")
    return text == "on"


def build_parser():
    p = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--suite", type=_list(str), default=list(SUITES),
                   help=f"comma-separated suites out of {','.join(SUITES + OPTIONAL_SUITES)} (default: all but "
                        "peers, which needs the [peers] extra, and tutorials)")
    p.add_argument("--json", metavar="PATH", help="write one JSON object per measurement to PATH")
    p.add_argument("--quick", action="store_true", help="reduced grid (about 1.5 minutes on 2 CPU cores)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="training data (default: ../shared/data/fashion-mnist when present, else synthetic 60k)")
    p.add_argument("--shared-data", metavar="DIR", default=str(SHARED),
                   help="directory holding mnist-5k/ and fashion-mnist/ for tta (default ../shared/data)")
    p.add_argument("--models", type=_list(str), help="models (default mlp,deep_mlp,cnn,lenet; quick: mlp,cnn)")
    p.add_argument("--batch-sizes", type=_list(int), help="batch sizes (default 128,512,2048; quick: 128)")
    p.add_argument("--steps-per-loop", type=_list(int), help="steps per loop call (default 1,10,100; quick 1,100)")
    p.add_argument("--jit", type=_list(_on_off), help="XLA settings, e.g. off,on (default off,on; quick off)")
    p.add_argument("--precisions", type=_list(str), help="precisions (default float32)")
    p.add_argument("--repeats", type=cli.positive_int, help="timed windows per measurement (default 3)")
    p.add_argument("--window-seconds", type=float,
                   help="length of each timed window, calibrated in steps (default 2; quick 0.5)")
    p.add_argument("--replicas", type=_list(int),
                   help="scaling: replica counts (default 1,2,4; quick 1,2); with --suite train alone: "
                        "run the train suite on this many mirrored replicas")
    p.add_argument("--dataset-sizes", type=_list(int), help="scaling: dataset sizes (default 5000,20000,60000,120000; quick 5000,20000)")
    p.add_argument("--tta-target", type=float, help="override the tta suite's target accuracies with this one")
    p.add_argument("--tta-jobs", type=_list(str),
                   help="run only these tta jobs (default: fast-mnist-cpu,tutorial-001b,fast-fashion-cpu,"
                        "deep-mlp-fashion)")
    p.add_argument("--scripts", type=_list(str),
                   help="tutorials: only these scripts, e.g. 001a,004 (default: all nine)")
    p.add_argument("--seeds", type=_list(int), help="tutorials: seeds (default 1,2,3)")
    p.add_argument("--no-tables", action="store_true", help="no tables on stdout (JSON only)")
    return p


def settings_from(args):
    from benchmarks.suites import MODELS, Settings

    quick = args.quick
    tta = [dict(job) for job in (QUICK_TTA if quick else FULL_TTA)
           if not args.tta_jobs or job["name"] in args.tta_jobs]
    if args.tta_target is not None:
        for job in tta:
            job["targets"] = [args.tta_target]
    return Settings(
        models=args.models or (["mlp", "cnn"] if quick else list(MODELS)),
        batch_sizes=args.batch_sizes or ([128] if quick else [128, 512, 2048]),
        steps_per_loop=args.steps_per_loop or ([1, 100] if quick else [1, 10, 100]),
        jit=args.jit or ([False] if quick else [False, True]),
        precisions=args.precisions or ["float32"],
        repeats=args.repeats or 3,
        window_seconds=args.window_seconds or (0.5 if quick else 2.0),
        replicas=args.replicas or ([1, 2] if quick else [1, 2, 4]),
        dataset_sizes=args.dataset_sizes or ([5000, 20000] if quick else [5000, 20000, 60000, 120000]),
        tta=tta,
    )


def _check(args, parser) -> None:
    from mnist_core.config import PRECISIONS

    unknown = [s for s in args.suite if s not in SUITES + OPTIONAL_SUITES + INTERNAL_SUITES]
    if unknown:
        parser.error(f"--suite: unknown suite(s) {','.join(unknown)}; choose from "
                     f"{','.join(SUITES + OPTIONAL_SUITES)}")
    names = [job["name"] for job in FULL_TTA + QUICK_TTA]
    unknown = [j for j in (args.tta_jobs or []) if j not in names]
    if unknown:
        parser.error(f"--tta-jobs: unknown job(s) {','.join(unknown)}; choose from {','.join(names)}")
    bad = [p for p in (args.precisions or []) if p not in PRECISIONS]
    if bad:
        parser.error(f"--precisions: unknown {','.join(bad)}; choose from {','.join(PRECISIONS)}")
    if args.data_dir and not os.path.exists(args.data_dir):
        parser.error(f"--data-dir {args.data_dir}: no such file or directory")
    if any(n < 1 for n in (args.replicas or [])) or any(b < 1 for b in (args.batch_sizes or [])):
        parser.error("--replicas and --batch-sizes must be positive")
    if args.window_seconds is not None and not args.window_seconds > 0:
        parser.error(f"--window-seconds must be a positive number, got {args.window_seconds}")


def load_data(data_dir: Optional[str], seed: int = 42):
    """The benchmark data: ``data_dir``, else ../shared/data/fashion-mnist, else synthetic 60k."""
    from mnist_core import data as data_lib

    if data_dir is None and (SHARED / "fashion-mnist").is_dir():
        data_dir = str(SHARED / "fashion-mnist")
    if data_dir:
        data = data_lib.load_from_path(data_dir, "fashion_mnist" if "fashion" in data_dir else "mnist")
    else:
        data = data_lib.synthetic(60000, 1000, seed=seed)
    return data, data_dir


def main(argv: Optional[List[str]] = None) -> int:
    cli.quiet_tensorflow_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(args, parser)

    def body():
        cli.import_tensorflow()
        from benchmarks import suites
        from benchmarks.common import Output

        settings = settings_from(args)
        strategy, replicas = None, 1
        if args.suite == ["train"] and args.replicas and len(args.replicas) == 1 and args.replicas[0] > 1:
            from mnist_core import strategy as strategy_lib
            from mnist_core.config import TrainConfig

            config = TrainConfig(strategy="mirrored", cpu_replicas=args.replicas[0])
            strategy_lib.configure_devices(config)  # before TensorFlow initialises its devices
            strategy, replicas = strategy_lib.make_strategy(config), args.replicas[0]
        out = Output(args.json)
        if args.no_tables:
            out.table = lambda *a, **k: None
        else:
            out.console.print(f"machine: {out.machine['device']}, {out.machine['cpu']}, "
                              f"TensorFlow {out.machine['tensorflow']}, Keras {out.machine['keras']}")
        need_data = {"pipeline", "train", "fit", "epoch", "scaling", "peers"} & set(args.suite)
        data, data_dir = load_data(args.data_dir, settings.seed) if need_data else (None, None)
        if data is not None and not args.no_tables:
            out.console.print(f"data: {data.describe()}")
        if "pipeline" in args.suite:
            suites.pipeline(out, settings, data, data_dir)
        if "train" in args.suite or "fit" in args.suite:
            suites.train_and_fit(out, settings, data, args.suite, strategy, replicas)
        if "epoch" in args.suite:
            suites.epoch(out, settings, data)
        if "scaling" in args.suite:
            common = ["--repeats", str(settings.repeats), "--window-seconds", str(settings.window_seconds)]
            if args.data_dir:
                common += ["--data-dir", args.data_dir]
            suites.scaling(out, settings, data, common)
        if "tta" in args.suite:
            suites.tta(out, settings, args.shared_data)
        if "peers" in args.suite:
            from benchmarks import peers

            peers.peers(out, settings, data)
        if "tutorials" in args.suite:
            suites.tutorials(out, args.shared_data, args.seeds or [1, 2, 3], args.scripts)
        if args.json and not args.no_tables:
            out.console.print(f"wrote {len(out.measurements)} measurements to {args.json}")

    return cli.run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
