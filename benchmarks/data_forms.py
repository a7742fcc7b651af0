"""``python -m benchmarks.data_forms``: accuracy from each form of data against ``model.fit``.

The same training set and test set handed to mnist_core in every form it reads — numpy
arrays, ``load_data()``'s nested pairs, a ``tf.data.Dataset`` pair (read into memory, and
streamed), a CSV, image folders per class, and with ``--class-weight balanced`` — and the
same model trained by ``model.fit`` on the arrays, a run per seed; and on an imbalanced
subset (classes 5-9 keep a tenth of their examples), mnist_core with ``class_weight
balanced`` against ``fit`` with the same ``class_weight``. Prints one JSON line per
run (``--json`` writes them) and a table of the test accuracy per form (mean, min, max)::

    python -m benchmarks.data_forms --data-dir ../shared/data/mnist-5k --seeds 1,2,3

Every run trains the same model with Adam (1e-3), batch 128, for ``--epochs`` epochs, and
is evaluated on every test example.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

FORMS = ("arrays", "load_data", "tf.data", "tf.data streamed", "csv", "folders", "fit",
         "class_weight balanced", "fit class_weight balanced")
# The class-weight forms train on an imbalanced subset: classes 5-9 keep a tenth of their
# examples (the mnist-5k training set has 500 of each class, where balanced weighs all 1).
RARE_CLASSES, RARE_KEEP = (5, 6, 7, 8, 9), 0.1


def _write_csv(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    flat = images.reshape(len(images), -1).astype(np.int64)
    header = "label," + ",".join(f"pixel{i}" for i in range(flat.shape[1]))
    table = np.concatenate([labels.astype(np.int64)[:, None], flat], axis=1)
    np.savetxt(path, table, fmt="%d", delimiter=",", header=header, comments="")


def _write_folders(root: Path, data) -> None:
    import tensorflow as tf

    for split, images, labels in (("train", data.train_images, data.train_labels),
                                  ("test", data.test_images, data.test_labels)):
        for i, (image, label) in enumerate(zip(images, labels)):
            path = root / split / data.classes[int(label)] / f"{i:05}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tf.io.encode_png(image[..., None] if image.ndim == 2 else image).numpy())


def _imbalanced(data, seed: int):
    """``data`` with classes 5-9 cut to a tenth of their training examples (a seeded choice)."""
    import dataclasses

    rng = np.random.default_rng(seed)
    keep = ~np.isin(data.train_labels, RARE_CLASSES) | (rng.random(data.num_train) < RARE_KEEP)
    return dataclasses.replace(data, train_images=data.train_images[keep], train_labels=data.train_labels[keep])


def _fit(data, model: str, seed: int, epochs: int, batch_size: int, class_weight=None) -> Dict:
    import keras

    from mnist_core import models

    keras.utils.set_random_seed(seed)
    net = models.build(models.get(model), image_shape=data.image_shape, num_classes=data.num_classes)
    shape = tuple(net.inputs[0].shape[1:])
    x = (data.train_images.astype("float32") / 255.0).reshape((-1, *shape))
    xt = (data.test_images.astype("float32") / 255.0).reshape((-1, *shape))
    net.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    net.fit(x, data.train_labels.astype("int32"), batch_size=batch_size, epochs=epochs, verbose=0,
            class_weight=class_weight)
    loss, accuracy = net.evaluate(xt, data.test_labels.astype("int32"), batch_size=1024, verbose=0)
    return {"test_accuracy": float(accuracy), "test_loss": float(loss), "test_examples": len(xt)}


def run(data_dir: str, seeds: List[int], epochs: int, model: str, forms: List[str], out=None) -> List[Dict]:
    import tensorflow as tf

    import mnist_core
    from mnist_core import data as data_lib

    data = data_lib.load("mnist", data_dir)
    work = Path(tempfile.mkdtemp(prefix="mnist_core_forms_"))
    if "csv" in forms:
        (work / "csv").mkdir()
        _write_csv(work / "csv" / "train.csv", data.train_images, data.train_labels)
        _write_csv(work / "csv" / "test.csv", data.test_images, data.test_labels)
    if "folders" in forms:
        _write_folders(work / "folders", data)
    arrays = (data.train_images, data.train_labels, data.test_images, data.test_labels)
    records = []
    for seed in seeds:
        for form in forms:
            config = mnist_core.TrainConfig(model=model, epochs=epochs, batch_size=128, seed=seed, quiet=True,
                                            output_dir=str(work / "runs" / f"{form}-{seed}".replace(" ", "_")))
            kwargs: Dict = {}
            if form == "arrays":
                kwargs["data"] = arrays
            elif form == "load_data":
                kwargs["data"] = ((data.train_images, data.train_labels), (data.test_images, data.test_labels))
            elif form in ("tf.data", "tf.data streamed"):
                kwargs["data"] = (tf.data.Dataset.from_tensor_slices(arrays[:2]).batch(256),
                                  tf.data.Dataset.from_tensor_slices(arrays[2:]).batch(256))
            elif form == "csv":
                config = config.replace(data_dir=str(work / "csv"))
            elif form == "folders":
                config = config.replace(data_dir=str(work / "folders"))
            elif form == "class_weight balanced":
                config = config.replace(class_weight="balanced")
                kwargs["data"] = _imbalanced(data, 0)
            elif form != "fit class_weight balanced" and form != "fit":
                raise ValueError(form)
            started = time.perf_counter()
            if form == "fit":
                result = _fit(data, model, seed, epochs, 128)
            elif form == "fit class_weight balanced":
                subset = _imbalanced(data, 0)
                weights = data_lib.with_class_weight(subset, "balanced").train_weights
                table = {int(c): float(weights[np.flatnonzero(subset.train_labels == c)[0]])
                         for c in np.unique(subset.train_labels)}
                result = _fit(subset, model, seed, epochs, 128, class_weight=table)
            else:
                if form == "tf.data streamed":
                    os.environ["MNIST_CORE_MAX_DATA_BYTES"] = "1"  # every dataset streamed
                try:
                    result = mnist_core.train(config, **kwargs)
                finally:
                    os.environ.pop("MNIST_CORE_MAX_DATA_BYTES", None)
            record = {"suite": "data_forms", "form": form, "seed": seed, "model": model, "epochs": epochs,
                      "test_accuracy": result["test_accuracy"], "test_examples": result["test_examples"],
                      "seconds": time.perf_counter() - started, "data": str(data_dir)}
            records.append(record)
            line = json.dumps(record)
            print(line, flush=True)
            if out is not None:
                out.write(line + "\n")
                out.flush()
    return records


def table(records: List[Dict]) -> str:
    """Markdown: test accuracy per form, mean [min-max] over the seeds."""
    rows = ["| form | test accuracy, mean [min-max] | seeds |", "| --- | --- | --- |"]
    for form in FORMS:
        values = [r["test_accuracy"] for r in records if r["form"] == form]
        if values:
            rows.append(f"| {form} | {np.mean(values):.4f} [{min(values):.4f}-{max(values):.4f}] | {len(values)} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    from mnist_core import cli

    p = argparse.ArgumentParser(prog="benchmarks.data_forms", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-5k"))
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--model", default="lenet")
    p.add_argument("--forms", default=",".join(FORMS), help=f"comma-separated, out of: {', '.join(FORMS)}")
    p.add_argument("--json", metavar="PATH", help="also write the JSON lines here")
    args = p.parse_args(argv)
    forms = [f.strip() for f in args.forms.split(",") if f.strip()]
    unknown = [f for f in forms if f not in FORMS]
    if unknown:
        print(f"benchmarks.data_forms: error: --forms: unknown {', '.join(unknown)}", file=sys.stderr)
        return 2
    cli.quiet_tensorflow_logs()

    def body():
        cli.import_tensorflow()
        out = open(args.json, "a") if args.json else None
        try:
            records = run(args.data_dir, [int(s) for s in args.seeds.split(",")], args.epochs, args.model, forms, out)
        finally:
            if out is not None:
                out.close()
        print(table(records))

    return cli.run_main("benchmarks.data_forms", body, argv)


if __name__ == "__main__":
    sys.exit(main())
