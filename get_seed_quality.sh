#!/usr/bin/env bash
# AdvCAM seeds on VOC train (1,464 images) and their quality (the paper's "seed" mIoU, best of the
# 0.15-0.34 background thresholds).
#
#   bash get_seed_quality.sh --voc12_root DIR [extra flags for obtain_CAM_masking.py]
#   VOC12_ROOT=DIR bash get_seed_quality.sh
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
source scripts/voc_root_args.sh "$@"
if [ -z "$VOC_ROOT" ]; then
  echo "get_seed_quality.sh: no VOC root: pass --voc12_root DIR or set VOC12_ROOT (the toy demo is get_mask_quality.sh)" >&2
  exit 2
fi
OUT=${OUT:-result}
$PY obtain_CAM_masking.py --voc12_root "$VOC_ROOT" --train_list voc12/train.txt --cam_out_dir "$OUT/cam_adv_mask" \
    "${EXTRA[@]}"
$PY run_sample.py --voc12_root "$VOC_ROOT" --cam_out_dir "$OUT/cam_adv_mask" --eval_cam_pass True \
    --results_json "$OUT/results.json"
$PY scripts/results_table.py "$OUT/results.json" "AdvCAM seeds=eval_cam:$OUT/cam_adv_mask"
