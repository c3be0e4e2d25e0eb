#!/bin/bash
# Issue 22 on a lent GPU, one call: (1) the learned-blur refiner trained longer with the paper's four objectives
# (L_cycl needs far more than a CPU budget), starting from the shipped weights; (2) `faceveil eval train` at the
# stored H100 reference's protocol (bench/results/train_on_anon/: split seed 0, 40 s a method, batch 32 at 320 px,
# two training seeds side by side) for none, replace and learnedblur (the shipped weights), then learnedblur
# with the weights trained in (1) (its cycle fidelity: over the first run's none). Run from the repository root
# with DATA holding facemask/images, facemask/gt.txt and deepface/
# (the deepface-unit photos; any size). Settings: DEV (cuda), LB_BUDGET (refiner training, default 180s),
# B (eval train budget a method, default 40s), OUT (results folder).
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
PY=${PY:-python3}
OUT=${OUT:-out}
DATA=${DATA:-.dev}
DEV=${DEV:-cuda}
mkdir -p "$OUT"
$PY -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), sys.version.split()[0])"
nvidia-smi -L 2>/dev/null
FM=(--images "$DATA/facemask/images" --labels "$DATA/facemask/gt.txt")
LB=(train learnedblur "${FM[@]}" --extra-images "$DATA/deepface" --device "$DEV" --relative 1.25
    --init src/faceveil/data/learnedblur.onnx --weights 1,1,1,1 --lr 2e-3 --scale 0.45,1.6 --seed 0
    --batch ${LB_BATCH:-32} --data-threads ${LB_THREADS:-6})
# A few steps first: a broken setup fails here in seconds, not after the budget.
$PY -m faceveil "${LB[@]}" --steps 3 --budget 0 -q --max-images 20 -o "$OUT/smoke.onnx" \
    || { echo "smoke run failed"; exit 1; }
rm -f "$OUT"/smoke.onnx*
L=${LOGS:-/tmp/faceveil_logs}
mkdir -p "$L" "$OUT/res"
# At most 8 files come back from the device: the model, its card, each eval run's results.json (its plots are
# redrawn from it) as soon as it is written, and the logs.
$PY -m faceveil "${LB[@]}" --budget "${LB_BUDGET:-180s}" -o "$OUT/learnedblur_gpu.onnx" > "$L/lb.txt" 2>&1 &
lb=$!
ET=(eval train "${FM[@]}" --budget "${B:-40s}" --device "$DEV" --batch 32 --threads 4 ${ET_EXTRA:-})
et() {  # NAME METHODS SEED
  $PY -m faceveil "${ET[@]}" --methods "$2" --seed "$3" -o "$L/$1" > "$L/$1.txt" 2>&1
  cp "$L/$1/results.json" "$OUT/res/$1.json"
}
et et_seed0 none,replace,learnedblur 0 &
et et_seed1 none,replace,learnedblur 1 &
wait $lb
tail -n 3 "$L/lb.txt"
if [ -f "$OUT/learnedblur_gpu.onnx" ]; then
  et etg_seed0 "learnedblur:model=$OUT/learnedblur_gpu.onnx" 0 &
  et etg_seed1 "learnedblur:model=$OUT/learnedblur_gpu.onnx" 1 &
fi
wait
grep -h -E "\] AP|rror" "$L"/*.txt | head -40
tar czf "$OUT/logs.tgz" -C "$L" $(cd "$L" && ls ./*.txt)
ls -la "$OUT" "$OUT/res"
