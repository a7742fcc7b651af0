#!/usr/bin/env bash
# The whole GPU check, prepared to run unattended in about 6 minutes:
#   1. does TensorFlow see the GPU? (if not: TF's log, and stop: nothing else is worth the time)
#   2. a reduced scripts/gpu_check.sh grid (cnn, batch 512, synthetic 60k, 1 epoch): every
#      precision x XLA on the default strategy, float32 on one_device and mirrored
#   3. the benchmarks' train and fit suites on mlp and cnn, batch 512, steps per loop 100
#   4. the GPU fast recipes run to the end on real data, when DATA_DIR holds it
# Run 2026-11-26 on an H200 (benchmarks/RESULTS.md, "On a GPU"): step 1 took 20 s, steps 2-4 344 s.
#   5. (speed) default flags against the best fixed setting (steps per loop chosen by time),
#      two training processes sharing the GPU (memory growth), and the peers suite on the
#      GPU: PyTorch eager, torch.compile and JAX, float32 and mixed precision, batch 512
# Usage: scripts/gpu_suite.sh OUT_DIR check          step 1 alone (a first, cheap call)
#        scripts/gpu_suite.sh OUT_DIR rest [DATA_DIR]  steps 2-4 (DATA_DIR holds mnist-5k/, fashion-mnist/)
#        scripts/gpu_suite.sh OUT_DIR speed           step 5 (about 8 minutes)
# Each step has its own time limit, so a slow step cannot take the later ones with it.
set -uo pipefail
out="${1:?usage: gpu_suite.sh OUT_DIR check|rest [DATA_DIR]}"
what="${2:-check}"
data="${3:-}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if [ "$what" = check ]; then
nvidia-smi -L > "$out/nvidia-smi.txt" 2>&1
timeout 120 python3 - > "$out/tf_gpu.txt" 2>&1 <<'PY'
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
print("tensorflow", tf.__version__, "built with CUDA", tf.test.is_built_with_cuda(), "GPUs", gpus)
if gpus:
    print(tf.config.experimental.get_device_details(gpus[0]))
    with tf.device("/GPU:0"):
        x = tf.random.normal([4096, 4096])
        print("matmul on", (x @ x).device)
PY
cat "$out/nvidia-smi.txt" "$out/tf_gpu.txt" | tail -40
if ! grep -q "GPUs \[PhysicalDevice" "$out/tf_gpu.txt"; then
  echo "TensorFlow lists no GPU: stopping (see tf_gpu.txt)"
  exit 3
fi
exit 0
fi
if [ "$what" = speed ]; then
echo "== defaults against fixed steps per loop (train,fit; XLA on, as auto chooses on this GPU)"
timeout 170 python3 -m benchmarks.run --suite train,fit --models mlp,cnn --batch-sizes 512 \
  --steps-per-loop 10,100 --jit on --repeats 3 --window-seconds 1 --json "$out/defaults.jsonl" 2>&1 | tail -30
echo "== two processes on one GPU (memory growth: each takes what it needs, both finish)"
for i in 1 2; do
  timeout 120 python3 -m mnist_core.train --dataset synthetic --synthetic-train-size 20000 --model cnn --epochs 1 --batch-size 512 \
    --output-dir "/tmp/shared-gpu-$i" --overwrite --quiet > "$out/shared-gpu-$i.txt" 2>&1 &
done
sleep 25; nvidia-smi --query-compute-apps=pid,used_memory --format=csv > "$out/shared-gpu-memory.csv" 2>&1
wait; for i in 1 2; do echo "process $i: $(tail -1 "$out/shared-gpu-$i.txt")"; done
cat "$out/shared-gpu-memory.csv"
echo "== peers on the GPU"
timeout 280 python3 -m benchmarks.run --suite peers --models mlp,cnn --batch-sizes 512 \
  --precisions float32,mixed_bfloat16,mixed_float16 --repeats 2 --window-seconds 1 --json "$out/peers.jsonl" 2>&1 | tail -40
exit 0
fi
echo "== gpu_check (reduced grid)"
STRATEGIES=default timeout 150 bash scripts/gpu_check.sh "" 1 | tee "$out/gpu_check.jsonl"
STRATEGIES="one_device mirrored" PRECISIONS=float32 JITS=off timeout 50 bash scripts/gpu_check.sh "" 1 \
  | tee -a "$out/gpu_check.jsonl"
echo "== benchmarks train,fit"
timeout 110 python3 -m benchmarks.run --suite train,fit --models mlp,cnn --batch-sizes 512 \
  --steps-per-loop 100 --jit off,on --repeats 2 --window-seconds 1 --json "$out/bench.jsonl" 2>&1 | tail -40
if [ -n "$data" ] && [ -d "$data/mnist-5k" ]; then
  for recipe in fast-mnist-gpu fast-fashion-gpu; do
    echo "== recipe $recipe"
    case $recipe in fast-mnist-gpu) d=mnist-5k;; *) d=fashion-mnist;; esac
    [ -d "$data/$d" ] || continue
    start=$(date +%s.%N)
    timeout 90 python3 -m mnist_core.train --config "recipes/$recipe.toml" --data-dir "$data/$d" \
      --output-dir "/tmp/$recipe" --overwrite --quiet 2>&1 | tail -3
    end=$(date +%s.%N)
    python3 - "/tmp/$recipe" "$start" "$end" "$recipe" <<'PY' | tee -a "$out/recipes.jsonl"
import json, sys
run, start, end, name = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
try:
    h = json.load(open(f"{run}/history.json")); s = json.load(open(f"{run}/summary.json"))
except OSError as e:
    print(json.dumps({"recipe": name, "error": str(e)})); sys.exit()
startup = (end - start) - s["seconds"]
print(json.dumps({"recipe": name, "final": s["test_accuracy"], "wall": round(end - start, 1),
                  "epochs": [[e["epoch"], e.get("test_accuracy"), round(e["elapsed_seconds"] + startup, 1)]
                             for e in h]}))
PY
  done
fi
