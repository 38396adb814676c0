#!/usr/bin/env bash
# AdvCAM seeds on VOC train (1,464 images) and their quality (the paper's "seed" mIoU, best of the
# 0.15-0.34 background thresholds).
#
#   bash get_seed_quality.sh --voc12_root DIR [extra flags for obtain_CAM_masking.py]
#   VOC12_ROOT=DIR bash get_seed_quality.sh
#   LAUNCH="torchrun --standalone --nproc_per_node 8" bash get_seed_quality.sh --voc12_root DIR   # on 8 GPUs
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
RUN=${LAUNCH:-$PY}  # the passes' launcher (README: multi-GPU and multi-node)
source scripts/voc_root_args.sh "$@"
if [ -z "$VOC_ROOT" ]; then
  echo "get_seed_quality.sh: no VOC root: pass --voc12_root DIR or set VOC12_ROOT (the toy demo is get_mask_quality.sh)" >&2
  exit 2
fi
# Reads the classifier sess/res50_cam.pth; writes everything under $OUT (default result/): cam_adv_mask/,
# results.json and the logs.
OUT=${OUT:-result}
mkdir -p "$OUT"
# first make sure every train image has its JPEG, ground truth and label (val and SBD are not needed here)
$PY scripts/check_voc.py --voc12_root "$VOC_ROOT" --train_list voc12/train.txt --val_list none \
    --ignore_other_flags "${EXTRA[@]}" 2>&1 | tee "$OUT/check_voc.log"
$RUN obtain_CAM_masking.py --voc12_root "$VOC_ROOT" --train_list voc12/train.txt --cam_out_dir "$OUT/cam_adv_mask" \
    --log_name "$OUT/obtain_cam_masking" "${EXTRA[@]}"
$RUN run_sample.py --voc12_root "$VOC_ROOT" --cam_out_dir "$OUT/cam_adv_mask" --eval_cam_pass True \
    --results_json "$OUT/results.json" --log_name "$OUT/sample_train_eval" \
    --ir_label_out_dir "$OUT/ir_label" --sem_seg_out_dir "$OUT/sem_seg" --ins_seg_out_dir "$OUT/ins_seg"
$PY scripts/results_table.py "$OUT/results.json" "AdvCAM seeds=eval_cam:$OUT/cam_adv_mask"
