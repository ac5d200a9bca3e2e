#!/bin/sh
# Train the bundled samkit-tiny model on photo-like copy-paste scenes mixed with procedural ones
# (--data mix), on a 20 x 20 grid (config tiny_p8, patch 8 at 160 px), warm-started from the
# shipped 10 x 10 samkit-tiny; then evaluate it and write the model card (scripts/finish_tiny.py).
# Resumable: run it again after an interruption and it continues from runs/tiny3/last.pt.
#   MINUTES=118 THREADS=1 scripts/train_tiny.sh
set -e
cd "$(dirname "$0")/.."
PY=.venv/bin/python
MINUTES=${MINUTES:-118}
THREADS=${THREADS:-1}
OUT=runs/tiny3

# 1. the training assets (sprites + photo backgrounds from Debian packages and scikit-image)
test -d runs/assets/sprites || $PY scripts/build_training_assets.py --out runs/assets

# 2. the warm start: the shipped patch-16 weights resampled to patch 8 (kept in runs/, the old
#    weights are backed up there before anything overwrites them)
mkdir -p $OUT
test -f runs/samkit-tiny-p16.safetensors || cp samkit/weights/samkit-tiny.safetensors runs/samkit-tiny-p16.safetensors
test -f $OUT/init.safetensors || $PY scripts/finish_tiny.py --warm-start runs/samkit-tiny-p16.safetensors $OUT/init.safetensors

# 3. train (wall-time budget; lr x0.1 at 2/3 and 96% of it)
$PY -m samkit train --data mix --init $OUT/init.safetensors --out $OUT \
  --minutes "$MINUTES" --steps 100000 --images-per-step 4 --masks-per-image 4 --rounds 5 \
  --lr 5e-4 --warmup 100 --seed 3 --threads "$THREADS" --checkpoint-every 180 --log-every 25 \
  --no-progress --export $OUT/samkit-tiny.safetensors
