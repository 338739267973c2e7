#!/usr/bin/env bash
# The GPU floors of the scale issue (#12), in one run on a CUDA machine, results under ${OUT:-reports/gpu}:
#  1. EASE in float32 on the GPU over the whole ML-25M-size catalog (59,047 movies, no max_items): fit and evaluation;
#  2. SASRec: one full epoch at ML-25M size on the GPU;
#  3. MF (MSE) and BPR: our Trainer against a hand-written PyTorch loop on the same GPU, at ML-25M size
#     (benchmarks/train_throughput.py; the floor is 0.8x).
# Synthetic data in MovieLens's layout is written first (benchmarks/scaling.py's generator).
#     OUT=/tmp/gpu bash benchmarks/gpu_floors.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-reports/gpu}"; DATA="${DATA:-/tmp/movie-genie-synthetic}"; THREADS="${THREADS:-$(nproc)}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MOVIE_GENIE_QUIET=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
python3 benchmarks/scaling.py --jobs ml-25m:ease ml-25m:sasrec:full --data-dir "$DATA" --threads "$THREADS" \
    --set ease:model.max_items=null --set ease:model.device=cuda --set 'sasrec:training.device=cuda' \
    --out "$OUT/scaling" 2>&1 | tee "$OUT/scaling.log"
for loss in mse bpr; do
  python3 benchmarks/train_throughput.py --device cuda --dataset ml-25m --data-dir "$DATA" --loss "$loss" \
      --batch-size 8192 --epochs 1 --repeats 3 2>&1 | tee "$OUT/throughput_$loss.log"
done
