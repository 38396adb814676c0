#!/usr/bin/env bash
# AdvCAM seeds on VOC train (1,464 images; or COCO 2014 train with --dataset coco14) and their quality (the paper's "seed" mIoU, best of the 0.15-0.34
# background thresholds). Installed as advcam-seed-quality; in a clone, bash get_seed_quality.sh runs this file.
# Outputs go under the current folder.
set -euo pipefail
SCRIPT=get_seed_quality.sh
KIND=seed
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=${PYTHON:-python}
RUN=${LAUNCH:-$PY}  # the passes' launcher (README: multi-GPU and multi-node)

usage() {
  cat <<'USAGE'
usage: get_seed_quality.sh [--dataset voc12] --voc12_root DIR [PASS FLAGS ...]  (installed: advcam-seed-quality ...)
       get_seed_quality.sh --dataset coco14 [--coco_root DIR] [PASS FLAGS ...]

AdvCAM seeds on VOC 2012 train (voc12/train.txt, 1,464 images) and their mIoU (the paper's seed quality, best of
the background thresholds 0.15-0.34). Checks the root first; reads the classifier sess/res50_cam.pth unless
--cam_weights_name says otherwise; writes cam_adv_mask/, results.json and the logs under $OUT.

  --voc12_root DIR (or VOC12_ROOT=DIR)   the VOC 2012 folder (required; the toy demo is get_mask_quality.sh)
  --dataset coco14                       MS COCO 2014 instead (docs/coco.md): AdvCAM seeds of coco14/train14.txt
                                         (82,783 images) and their mIoU over 81 classes, checking the root first
  --coco_root DIR (or COCO_ROOT=DIR)     the COCO 2014 folder; without one, --dataset coco14 runs the toy COCO
                                         demo (generates toy_coco/, trains its classifier, writes demo_coco/)

Every other argument is passed to the AdvCAM pass (python -m advcam.obtain_cam_masking --help lists the flags) and
to the check (advcam-check-voc), e.g. --device cuda:1. A rerun resumes where the last one stopped.

environment:
  OUT       output folder (default: result/; demo_coco/ for the toy COCO)
  TOY_COCO  the toy COCO folder (default: toy_coco/; generated when it has no lists)
  PYTHON    the Python interpreter (default: python)
  LAUNCH    the passes' launcher, e.g. LAUNCH="torchrun --standalone --nproc_per_node 8" (default: $PYTHON)
USAGE
}

COCO_OK=1
source "$HERE/voc_root_args.sh" "$@"
if [ "$DATASET" = coco14 ]; then
  # the train split only (val is not read here); on the toy, its classifier and seeds are made here
  COCO_SPLITS=train2014
  source "$HERE/coco_root.sh"
  if [ "$TOY" = 1 ]; then
    $RUN -m advcam.run_sample "${TOY_COMMON[@]}" --cam_out_dir "$OUT/cam_adv_mask" --eval_cam_pass True "${EXTRA[@]}"
  else
    $RUN -m advcam.obtain_cam_masking --dataset coco14 --coco_root "$COCO_DIR" --cam_out_dir "$OUT/cam_adv_mask" \
        --log_name "$OUT/obtain_cam_masking" "${EXTRA[@]}"
    $RUN -m advcam.run_sample --dataset coco14 --coco_root "$COCO_DIR" --cam_out_dir "$OUT/cam_adv_mask" \
        --eval_cam_pass True --results_json "$RES" --log_name "$OUT/sample_train_eval"
  fi
  $PY -m advcam.tools.results_table "$RES" "AdvCAM seeds=eval_cam:$OUT/cam_adv_mask"
  exit 0
fi
if [ -z "$VOC_ROOT" ]; then
  echo "get_seed_quality.sh: error: no VOC root: pass --voc12_root DIR or set VOC12_ROOT (the toy demo is get_mask_quality.sh)" >&2
  exit 2
fi
# Reads the classifier sess/res50_cam.pth; writes everything under $OUT (default result/): cam_adv_mask/,
# results.json and the logs.
OUT=${OUT:-result}
mkdir -p "$OUT"
# first make sure every train image has its JPEG, ground truth and label (val and SBD are not needed here)
$PY -m advcam.tools.check_voc --voc12_root "$VOC_ROOT" --train_list voc12/train.txt --val_list none \
    --ignore_other_flags "${EXTRA[@]}" 2>&1 | tee "$OUT/check_voc.log"
$RUN -m advcam.obtain_cam_masking --voc12_root "$VOC_ROOT" --train_list voc12/train.txt \
    --cam_out_dir "$OUT/cam_adv_mask" --log_name "$OUT/obtain_cam_masking" "${EXTRA[@]}"
$RUN -m advcam.run_sample --voc12_root "$VOC_ROOT" --cam_out_dir "$OUT/cam_adv_mask" --eval_cam_pass True \
    --results_json "$OUT/results.json" --log_name "$OUT/sample_train_eval" \
    --ir_label_out_dir "$OUT/ir_label" --sem_seg_out_dir "$OUT/sem_seg" --ins_seg_out_dir "$OUT/ins_seg"
$PY -m advcam.tools.results_table "$OUT/results.json" "AdvCAM seeds=eval_cam:$OUT/cam_adv_mask"
