"""``python -m benchmarks.report RESULTS.jsonl``: Markdown tables from a benchmark run.

Turns the JSON lines that ``python -m benchmarks.run --json`` writes into the tables of
``benchmarks/RESULTS.md``, so that published figures are copied by a program, not by hand:

* pipeline: images/s per source and batch size;
* train vs fit: one row per model and batch size, mnist_core's images/s for every
  steps-per-loop × XLA setting next to ``model.fit``'s defaults and matched variants,
  and the paired ratios;
* warm-up seconds per setting;
* scaling (replicas, epoch time and memory against dataset size) and time to accuracy.

Only the sections the file has data for are printed.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Dict, Iterable, List, Optional

from benchmarks.common import read_records
from mnist_core import cli
from mnist_core.errors import DataError

PROG = "benchmarks.report"


def _num(value: Optional[float], digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _table(header: List[str], rows: Iterable[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def pipeline_table(records: List[Dict]) -> Optional[str]:
    rows = [[r["name"], str(r["config"]["batch_size"]), _num(r["median"]),
             f"{_num(r['min'])}-{_num(r['max'])}", _num(r.get("load_seconds"), 2)]
            for r in records if r["suite"] == "pipeline"]
    return _table(["source", "batch", "images/s (median)", "min-max", "load s"], rows) if rows else None


def _core_key(config: Dict):
    return (config["precision"], bool(config["jit_compile"]), config["steps_per_loop"])


def train_fit_tables(records: List[Dict]) -> List[str]:
    """images/s per model × batch (mnist_core settings and fit variants), then the ratios."""
    core = defaultdict(dict)  # (model, batch) -> {(precision, jit, spl): record}
    fits = defaultdict(dict)  # (model, batch) -> {label: record}
    ratios = defaultdict(dict)
    defaults = {}  # (model, batch) -> the default-flags record
    for r in records:
        c = r["config"]
        if r["suite"] == "train" and r["name"].startswith("ratio"):
            continue
        if r["suite"] == "train" and c.get("defaults"):
            defaults[(c["model"], c["batch_size"])] = r
        elif r["suite"] == "train":
            core[(c["model"], c["batch_size"])][_core_key(c)] = r
        elif r["suite"] == "fit" and r["name"].startswith("ratio"):
            ratios[(c["model"], c["batch_size"])][c["fit"]] = r
        elif r["suite"] == "fit":
            fits[(c["model"], c["batch_size"])][r["name"].rsplit("(", 1)[1].rstrip(")")] = r
    if not core:
        return []
    settings = sorted({key for per in core.values() for key in per}, key=lambda k: (k[0] != "float32", k))
    labels = sorted({label for per in fits.values() for label in per}, key=lambda s: (s != "defaults", s))
    show_precision = len({k[0] for k in settings}) > 1

    def setting_name(key) -> str:
        precision, jit, spl = key
        return (f"{precision} " if show_precision else "") + f"XLA {'on' if jit else 'off'}, {spl} spl"

    header = ["model", "batch"] + [f"mnist_core {setting_name(k)}" for k in settings]
    if defaults:
        header.append("mnist_core defaults")
    header += [f"fit {label}" for label in labels]

    def defaults_cell(key) -> List[str]:
        if not defaults:
            return []
        r = defaults.get(key)
        if r is None:
            return ["-"]
        c = r["config"]
        return [f"{_num(r['median'])} (XLA auto→{'on' if c['jit_compile_resolved'] else 'off'}, "
                f"{c['steps_per_loop']} spl)"]
    rows, warm, ratio_rows = [], [], []
    for model, batch in core:
        per, per_fit = core[(model, batch)], fits.get((model, batch), {})
        best = max(r["median"] for r in per.values())
        cells = []
        for key in settings:
            r = per.get(key)
            cell = _num(r["median"]) if r else "-"
            cells.append(f"**{cell}**" if r and r["median"] == best else cell)
        rows.append([model, str(batch)] + cells + defaults_cell((model, batch)) + [
            _num(per_fit[label]["median"]) + (f" (spe {per_fit[label]['config']['steps_per_execution']})"
                                               if label != "defaults" else "")
            if label in per_fit else "-" for label in labels])
        warm.append([model, str(batch)] + [_num(per[k]["warmup_seconds"], 1) if k in per else "-" for k in settings]
                    + ([_num(defaults[(model, batch)]["warmup_seconds"], 1) if (model, batch) in defaults else "-"]
                       if defaults else [])
                    + [_num(per_fit[label]["warmup_seconds"], 1) if label in per_fit else "-" for label in labels])
        if (model, batch) in ratios:
            cells = []
            for label in labels:
                r = ratios[(model, batch)].get(label)
                cells.append(f"{r['median']:.2f}× [{r['min']:.2f}-{r['max']:.2f}] (XLA "
                             f"{_xla(r['config'].get('mnist_core_jit_compile'))})" if r else "-")
            ratio_rows.append([model, str(batch)] + cells)
    out = ["images/s, median of the timed windows (bold: the fastest mnist_core setting):\n\n"
           + _table(header, rows),
           "Warm-up seconds (tracing and compilation, not in the figures above):\n\n" + _table(header, warm)]
    if ratio_rows:
        out.append("Ratio mnist_core / `model.fit`: median of the per-round ratios [min-max]. mnist_core "
                   "with its default flags (`--jit-compile auto`, automatic steps per loop) against fit's "
                   "defaults, and at the most steps per loop with the same XLA setting against the matched "
                   "variants:\n\n"
                   + _table(["model", "batch"] + [f"vs fit {label}" for label in labels], ratio_rows))
    return out


def _xla(value) -> str:
    return value if isinstance(value, str) else ("on" if value else "off")


def scaling_tables(records: List[Dict]) -> List[str]:
    out = []
    replicas = [r for r in records if r["suite"] == "scaling" and r["name"].startswith("replicas")]
    if replicas:
        base = replicas[0]["median"]
        out.append(_table(["run", "images/s (median)", "min-max", "vs 1 replica"], [
            [f"{r['config']['model']} batch {r['config']['batch_size']}, {r['config']['replicas']} replica(s)",
             _num(r["median"]), f"{_num(r['min'])}-{_num(r['max'])}", f"{r['median'] / base:.2f}×"]
            for r in replicas]))
    epochs = [r for r in records if r["suite"] == "scaling" and r["name"].startswith("epoch")]
    if epochs:
        out.append(_table(["run", "epoch s", "ms per example", "peak RSS MiB", "RSS growth MiB"], [
            [f"{r['config']['model']} epoch of {r['config']['examples']:,} examples", _num(r["median"], 2),
             f"{1000 * r['median'] / r['config']['examples']:.3f}", _num(r["peak_rss_mib"]),
             _num(r["rss_growth_mib"])] for r in epochs]))
    return out


def tta_table(records: List[Dict]) -> Optional[str]:
    finals = {r["name"][:-len(" final accuracy")]: r for r in records
              if r["suite"] == "tta" and r["name"].endswith(" final accuracy")}
    rows = []
    for r in records:
        if r["suite"] != "tta" or r["unit"] != "seconds":
            continue
        c = r["config"]
        name = c.get("name") or f"{c['model']} {c.get('optimizer', '')}".strip()  # records before recipes
        final = finals.get(name)
        accuracies = (final["samples"] if final else
                      r.get("final_test_accuracies") or [r[k] for k in ("final_test_accuracy",) if k in r])
        runs = f"{r.get('reached_runs', int(r['reached']))}/{r.get('runs', 1)}"
        rows.append([f"`{name}`, {c['data']}", str(c["target"]), runs,
                     _num(r["median"], 1) if r["samples"] else "not reached",
                     _num(r["from_first_step_seconds"], 1) if r.get("from_first_step_seconds") else "-",
                     ", ".join(str(e) for e in r.get("epochs_to_target", [])) or "-",
                     " / ".join(f"{a:.4f}" for a in accuracies)])
    if not rows:
        return None
    return _table(["job", "target", "seeds reaching it", "s from process start (median)",
                   "s from first step (median)", "epoch reached (per seed)", "final test accuracy (per seed)"], rows)


def report(records: List[Dict]) -> str:
    """All sections the records have data for, as Markdown."""
    sections = []
    machine = records[0]["machine"] if records else {}
    if machine:
        sections.append(f"Machine: {machine.get('device')}, {machine.get('cpu')}, Python {machine.get('python')}, "
                        f"TensorFlow {machine.get('tensorflow')}, Keras {machine.get('keras')}.")
    pipeline = pipeline_table(records)
    if pipeline:
        sections.append("### Input pipeline alone (`pipeline`)\n\n" + pipeline)
    train = train_fit_tables(records)
    if train:
        sections.append("### mnist_core loop vs `model.fit` (`train`, `fit`)\n\n" + "\n\n".join(train))
    scaling = scaling_tables(records)
    if scaling:
        sections.append("### Scaling (`scaling`)\n\n" + "\n\n".join(scaling))
    tta = tta_table(records)
    if tta:
        sections.append("### Time to accuracy (`tta`)\n\n" + tta)
    return "\n\n".join(sections) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = cli.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("results", help="JSON lines written by python -m benchmarks.run --json")
    args = parser.parse_args(argv)

    def body():
        not_results = f"{args.results}: not the JSON lines that benchmarks.run --json writes"
        try:
            records = read_records(args.results)
        except OSError as e:
            raise DataError(f"{args.results}: {(e.strerror or str(e)).lower()}") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DataError(not_results) from None
        try:
            text = report(records)
        except (KeyError, TypeError, AttributeError, IndexError) as e:
            raise DataError(f"{not_results} (no {e})") from None
        print(text, end="")

    return cli.run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
