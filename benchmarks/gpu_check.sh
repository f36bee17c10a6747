#!/usr/bin/env bash
# GN2 on a CUDA GPU in under 8 minutes: demo data, a short `salt fit` in bf16-mixed, `salt test`,
# `to_onnx`, then jets/s and peak GPU memory for eager / compiled x fp32 / bf16.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]     # from the project root, with salt installed
#
# Everything is written under OUT_DIR (default /tmp/salt_gpu_check); the figures are printed.
# Knobs (environment): STEPS (timed steps per mode, 30), TRAIN/TEST (demo jets, 120000/20000),
# MODES ("eager compiled"), PRECISIONS ("fp32 bf16"), CONFIGS ("configs/GN2.yaml"; later files
# override earlier ones), ACCELERATOR (gpu; cpu runs the same commands on the CPU, as the tests
# do on tiny data with a small network).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/salt_gpu_check}
BIN=${BIN:-$(dirname "$(command -v salt)")}
STEPS=${STEPS:-30}; TRAIN=${TRAIN:-120000}; TEST=${TEST:-20000}
MODES=${MODES:-eager compiled}; PRECISIONS=${PRECISIONS:-fp32 bf16}
ACCELERATOR=${ACCELERATOR:-gpu}; BATCH=${BATCH:-1000}; CONFIGS=${CONFIGS:-configs/GN2.yaml}
WORKERS=${WORKERS:-4}
CONFIG_ARGS=(); for c in $CONFIGS; do CONFIG_ARGS+=(--config "$c"); done
DEVICE=cuda; [ "$ACCELERATOR" = gpu ] || DEVICE=cpu
mkdir -p "$OUT"
if [ "$DEVICE" = cuda ]; then
  "$BIN/python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"
fi

[ -f "$OUT/data/test.h5" ] || "$BIN/salt" demo-data --out "$OUT/data" --train "$TRAIN" \
  --val "$TEST" --test "$TEST"
DATA=(--data.train_file "$OUT/data/train.h5" --data.val_file "$OUT/data/val.h5"
      --data.test_file "$OUT/data/test.h5" --data.norm_dict "$OUT/data/norm_dict.yaml"
      --data.class_dict "$OUT/data/class_dict.yaml" --data.batch_size "$BATCH")

echo "== salt fit ($CONFIGS, bf16-mixed, 1 epoch)"
start=$(date +%s)
"$BIN/salt" fit "${CONFIG_ARGS[@]}" "${DATA[@]}" -n gpu_check \
  --trainer.default_root_dir "$OUT/logs" --trainer.max_epochs 1 \
  --trainer.accelerator "$ACCELERATOR" --trainer.precision bf16-mixed --trainer.logger false
echo "fit wall time: $(( $(date +%s) - start )) s"
RUN=$(ls -td "$OUT"/logs/gpu_check_*/ | head -1)

echo "== salt test"
start=$(date +%s)
"$BIN/salt" test --config "${RUN}config.yaml" --trainer.accelerator "$ACCELERATOR" --overwrite
echo "test wall time: $(( $(date +%s) - start )) s"

echo "== to_onnx (parity checked by the exporter)"
"$BIN/to_onnx" --ckpt_path "$(ls "$RUN"ckpts/epoch=*.ckpt | head -1)" --overwrite

echo "== training throughput and peak memory"
# shellcheck disable=SC2086
"$BIN/python" benchmarks/gpu_check.py --data "$OUT/data" --steps "$STEPS" --device "$DEVICE" \
  --batch_size "$BATCH" --workers "$WORKERS" --modes $MODES --precisions $PRECISIONS \
  --configs $CONFIGS
