#!/bin/sh
# Train the bundled samkit-tiny model on photo-like copy-paste scenes mixed with procedural ones
# (--data mix), on a 20 x 20 grid (config tiny_p8, patch 8 at 160 px), warm-started from the
# shipped 10 x 10 samkit-tiny; then evaluate it and write the model card (scripts/finish_tiny.py).
# Resumable: run it again after an interruption and it continues from $OUT/last.pt.
#   MINUTES=118 THREADS=1 scripts/train_tiny.sh                     # stage 1 (runs/tiny3)
#   OUT=runs/tiny4 INIT=runs/tiny3/samkit-tiny.safetensors LR=3e-4 MINUTES=130 scripts/train_tiny.sh
#                                                                  # stage 2, from stage 1's weights
#   OUT=runs/tiny5 INIT=runs/tiny4/samkit-tiny.safetensors DATA=mix:6 LR=1.5e-4 SEED=6 MINUTES=120 scripts/train_tiny.sh
#                                                                  # stage 4, on new scenes
# On a GPU: DEVICE=cuda IMAGES=16 scripts/train_tiny.sh
set -e
cd "$(dirname "$0")/.."
PY=.venv/bin/python
MINUTES=${MINUTES:-118}
THREADS=${THREADS:-1}
OUT=${OUT:-runs/tiny3}
INIT=${INIT:-$OUT/init.safetensors}
LR=${LR:-5e-4}
SEED=${SEED:-3}
DEVICE=${DEVICE:-cpu}
IMAGES=${IMAGES:-4}
DATA=${DATA:-mix}   # mix[:SEED] / photo[:SEED]: a new SEED draws new scenes (each stage should)

# 1. the training assets (sprites + photo backgrounds from Debian packages and scikit-image)
test -d runs/assets/sprites || $PY scripts/build_training_assets.py --out runs/assets

# 2. the warm start: the shipped patch-16 weights resampled to patch 8 (kept in runs/, the old
#    weights are backed up there before anything overwrites them)
mkdir -p $OUT
test -f runs/samkit-tiny-p16.safetensors || cp samkit/weights/samkit-tiny.safetensors runs/samkit-tiny-p16.safetensors
test -f "$INIT" || $PY scripts/finish_tiny.py --warm-start runs/samkit-tiny-p16.safetensors "$INIT"

# 3. train (wall-time budget; lr x0.1 at 2/3 and 96% of it)
$PY -m samkit train --data "$DATA" --init "$INIT" --out $OUT \
  --minutes "$MINUTES" --steps 100000 --images-per-step "$IMAGES" --masks-per-image 4 --rounds 5 \
  --lr "$LR" --warmup 100 --seed "$SEED" --device "$DEVICE" --threads "$THREADS" --checkpoint-every 180 --log-every 25 \
  --no-progress --export $OUT/samkit-tiny.safetensors
