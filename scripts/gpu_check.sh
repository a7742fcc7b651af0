#!/usr/bin/env bash
# Short training per strategy x precision x jit on a GPU machine; one JSON line per run
# (images/s, test accuracy, device). Usage:
#   scripts/gpu_check.sh [DATA_DIR] [EPOCHS]
# Environment: MODEL (cnn), BATCH (512), and to run part of the grid STRATEGIES
# ("default one_device mirrored"), PRECISIONS ("float32 mixed_float16 mixed_bfloat16"), JITS ("off on").
# DATA_DIR: IDX directory (e.g. ../shared/data/fashion-mnist); default: synthetic data
# (test accuracy is then ~0.1 and only the throughput means something).
set -uo pipefail
data_dir="${1:-}"
epochs="${2:-2}"
model="${MODEL:-cnn}"
batch="${BATCH:-512}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -n "$data_dir" ]; then data=(--data-dir "$data_dir"); else data=(--dataset synthetic); fi
device="$(python3 - <<'PY' 2>/dev/null
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
print(tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "CPU")
PY
)"
n=0
for strategy in ${STRATEGIES:-default one_device mirrored}; do
  for precision in ${PRECISIONS:-float32 mixed_float16 mixed_bfloat16}; do
    for jit in ${JITS:-off on}; do
      n=$((n + 1))
      out="$work/run$n"
      log="$work/log$n"
      if python3 -m mnist_core.train "${data[@]}" --model "$model" --epochs "$epochs" --batch-size "$batch" \
          --strategy "$strategy" --precision "$precision" --jit-compile "$jit" --output-dir "$out" --quiet >"$log" 2>&1; then
        python3 - "$out/summary.json" "$device" "$strategy" "$precision" "$jit" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps({"device": sys.argv[2], "strategy": sys.argv[3], "precision": sys.argv[4],
                  "jit": sys.argv[5] == "on", "model": s["config"]["model"], "batch_size": s["config"]["batch_size"],
                  "replicas": s["num_replicas"], "images_per_second": s["images_per_second"],
                  "test_accuracy": s["test_accuracy"], "seconds": s["seconds"]}))
PY
      else
        err="$(grep -v -E '^(WARNING: All|I0000|E0000|W0000)' "$log" | tail -1)"
        python3 -c 'import json,sys; print(json.dumps({"device": sys.argv[1], "strategy": sys.argv[2], "precision": sys.argv[3], "jit": sys.argv[4] == "on", "error": sys.argv[5]}))' \
          "$device" "$strategy" "$precision" "$jit" "$err"
      fi
    done
  done
done
