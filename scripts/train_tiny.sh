#!/bin/sh
# Train the bundled samkit-tiny model on synthetic scenes for 120 minutes of single-thread CPU
# time, then evaluate it and write the model card (scripts/finish_tiny.py). Resumable: run it
# again after an interruption and it continues from runs/tiny/last.pt.
set -e
cd "$(dirname "$0")/.."
.venv/bin/python -m samkit.train --data synthetic --config tiny --out runs/tiny \
  --minutes 120 --steps 100000 --images-per-step 4 --masks-per-image 4 --rounds 5 \
  --lr 8e-4 --warmup 250 --seed 0 --threads 1 --checkpoint-every 180 --log-every 25 \
  --no-progress --export samkit/weights/samkit-tiny.safetensors
.venv/bin/python scripts/finish_tiny.py
