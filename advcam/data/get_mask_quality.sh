#!/usr/bin/env bash
# AdvCAM seeds -> IRN pseudo masks, and their quality (mIoU against VOC or COCO ground truth). Installed as
# advcam-mask-quality; in a clone, bash get_mask_quality.sh runs this file. Outputs go under the current folder.
set -euo pipefail
SCRIPT=get_mask_quality.sh
KIND=mask
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=${PYTHON:-python}
RUN=${LAUNCH:-$PY}  # the passes' launcher (README: multi-GPU and multi-node)

usage() {
  cat <<'USAGE'
usage: get_mask_quality.sh [--dataset voc12] [--voc12_root DIR] [PASS FLAGS ...]  (installed: advcam-mask-quality ...)
       get_mask_quality.sh --dataset coco14 [--coco_root DIR] [PASS FLAGS ...]

AdvCAM seeds -> IRN pseudo masks -> their mIoU against the VOC (or COCO 2014) ground truth.

  get_mask_quality.sh                          no VOC root: the toy VOC demo on the CPU (generates toy_voc/,
                                               writes demo_out/ with results.json and a report)
  get_mask_quality.sh --voc12_root DIR         real VOC 2012 + SBD with the reference defaults: checks the root,
                                               AdvCAM on voc12/train_aug.txt, then IRN; writes result/
  VOC12_ROOT=DIR get_mask_quality.sh           the same
  get_mask_quality.sh --dataset coco14         no COCO root: the toy COCO demo on the CPU (generates toy_coco/ and
                                               its masks, trains the classifier, AdvCAM seeds, IRN, then the
                                               segmentation network scored on val; writes demo_coco/ with
                                               results.json)
  get_mask_quality.sh --dataset coco14 --coco_root DIR
                                               real COCO 2014 (docs/coco.md; masks from advcam-make-coco-masks):
                                               checks the root, AdvCAM on coco14/train14.txt, then IRN; reads
                                               sess/res50_cam.pth, writes result/
  COCO_ROOT=DIR get_mask_quality.sh --dataset coco14     the same

Every other argument is passed to each pass (python -m advcam.obtain_cam_masking and python -m advcam.run_sample;
their --help lists the flags), e.g. --device cuda:1; on a real root also to the check (advcam-check-voc).
A rerun resumes where the last one stopped.

environment:
  OUT       output folder (default: result/ on a real root, demo_out/ for the toy demo, demo_coco/ for the toy COCO)
  TOY_VOC   the toy VOC folder (default: toy_voc/; generated when it has no lists)
  TOY_COCO  the toy COCO folder (default: toy_coco/; generated when it has no lists)
  PYTHON    the Python interpreter (default: python)
  LAUNCH    the passes' launcher, e.g. LAUNCH="torchrun --standalone --nproc_per_node 8" (default: $PYTHON)
USAGE
}

COCO_OK=1
source "$HERE/voc_root_args.sh" "$@"

if [ "$DATASET" = coco14 ]; then
  source "$HERE/coco_root.sh"  # the toy root (and its classifier and seeds) when none is given; check_coco
  if [ "$TOY" = 1 ]; then
    # the toy: seed quality, then IRN over the frozen ImageNet EfficientNet-Lite0 with the toy VOC demo's walk (the
    # same 128 x 96 images). eval_ins_seg is VOC only for now.
    $RUN -m advcam.run_sample "${TOY_COMMON[@]}" --cam_out_dir "$OUT/cam_adv_mask" --ir_label_out_dir "$OUT/ir_label" \
        --sem_seg_out_dir "$OUT/sem_seg" --irn_network advcam.nets.efficientnet_lite0_irn --irn_crop_size 128 \
        --irn_batch_size 16 --irn_num_epoches 30 --exp_times 4 \
        --eval_cam_pass True --cam_to_ir_label_pass True --train_irn_pass True --make_sem_seg_pass True \
        --eval_sem_seg_pass True "${EXTRA[@]}"
    # the final segmentation network with the toy VOC demo's step 3b settings (heads over the frozen ImageNet
    # EfficientNet-Lite0; the AdvCAM recipe's batch of 10 and balanced CE for 600 updates of crops of 128, lr 0.01;
    # scales 0.75-1.25 + flip, then the CRF), trained on the IRN masks of the toy's train images and scored on its
    # val images (81 labels), whose ground truth no stage has seen
    $RUN -m advcam.run_sample "${TOY_COMMON[@]}" --sem_seg_out_dir "$OUT/sem_seg" \
        --seg_train_list "$COCO_DIR/train14.txt" --seg_infer_list "$COCO_DIR/val14.txt" \
        --seg_network efficientnet_lite0_seg --seg_train_backbone False --seg_recipe advcam --seg_num_iters 600 \
        --seg_crop_size 128 --seg_scales 0.75 1.0 1.25 1.5 --seg_learning_rate 0.01 --seg_infer_scales 0.75 1.0 1.25 \
        --seg_weights_name "$OUT/sess/lite0_seg.pth" --seg_out_dir "$OUT/seg" --seg_crf_out_dir "$OUT/seg_crf" \
        --train_seg_pass True --make_seg_pass True --eval_seg_pass True "${EXTRA[@]}"
    SEG_ROWS=("Segmentation (val)=eval_seg:$OUT/seg" "Segmentation (val, CRF)=eval_seg:$OUT/seg#crf")
  else
    # Real COCO 2014: AdvCAM on coco14/train14.txt (82,783 images) with the classifier sess/res50_cam.pth (README:
    # --train_cam_pass), then IRN with the COCO defaults of docs/coco.md; everything under $OUT (default result/).
    $RUN -m advcam.obtain_cam_masking --dataset coco14 --coco_root "$COCO_DIR" --cam_out_dir "$OUT/cam_adv_mask" \
        --log_name "$OUT/obtain_cam_masking" "${EXTRA[@]}"
    $RUN -m advcam.run_sample --dataset coco14 --coco_root "$COCO_DIR" --cam_out_dir "$OUT/cam_adv_mask" \
        --results_json "$RES" --ir_label_out_dir "$OUT/ir_label" --sem_seg_out_dir "$OUT/sem_seg" \
        --irn_weights_name "$OUT/sess/res50_irn.pth" --log_name "$OUT/sample_train_eval" \
        --eval_cam_pass True --cam_to_ir_label_pass True --train_irn_pass True \
        --make_sem_seg_pass True --eval_sem_seg_pass True "${EXTRA[@]}"
    SEG_ROWS=()
  fi
  $PY -m advcam.tools.results_table "$RES" "AdvCAM seeds=eval_cam:$OUT/cam_adv_mask" \
      "IRN masks=eval_sem_seg:$OUT/sem_seg" "${SEG_ROWS[@]}"
  if [ "$TOY" = 1 ]; then  # the report of the toy run: figures, threshold sweep, per-class IoU ($OUT/report/)
    REPORT=$($PY -m advcam.tools.report --out "$OUT" --dataset coco14 --coco_root "$COCO_DIR" | tail -n 1)
    echo "Report: $REPORT (its figures in $OUT/report/figures/)"
  fi
  exit 0
fi

if [ -n "$VOC_ROOT" ]; then
  # Real VOC: the reference pipeline with its defaults (AdvCAM on train_aug, then IRN). It reads the classifier
  # sess/res50_cam.pth (README: --train_cam_pass) and writes everything under $OUT (default result/):
  # cam_adv_mask/, ir_label/, sem_seg/, sess/res50_irn.pth, results.json and the logs.
  OUT=${OUT:-result}
  RES="$OUT/results.json"
  mkdir -p "$OUT"
  # first make sure every listed image has its JPEG, ground truth and label (seconds; stops here if not)
  $PY -m advcam.tools.check_voc --voc12_root "$VOC_ROOT" --ignore_other_flags "${EXTRA[@]}" 2>&1 \
      | tee "$OUT/check_voc.log"
  $RUN -m advcam.obtain_cam_masking --voc12_root "$VOC_ROOT" --train_list voc12/train_aug.txt \
      --cam_out_dir "$OUT/cam_adv_mask" --log_name "$OUT/obtain_cam_masking" "${EXTRA[@]}"
  $RUN -m advcam.run_sample --voc12_root "$VOC_ROOT" --cam_out_dir "$OUT/cam_adv_mask" --results_json "$RES" \
      --ir_label_out_dir "$OUT/ir_label" --sem_seg_out_dir "$OUT/sem_seg" --ins_seg_out_dir "$OUT/ins_seg" \
      --irn_weights_name "$OUT/sess/res50_irn.pth" --log_name "$OUT/sample_train_eval" \
      --eval_cam_pass True --cam_to_ir_label_pass True --train_irn_pass True \
      --make_sem_seg_pass True --eval_sem_seg_pass True "${EXTRA[@]}"
  $PY -m advcam.tools.results_table "$RES" "AdvCAM seeds=eval_cam:$OUT/cam_adv_mask" \
      "IRN masks=eval_sem_seg:$OUT/sem_seg"
  exit 0
fi

# ------------------------------------------------------------------------------------------------
# Toy demo (no VOC here): a generated VOC-format set, a classifier trained from scratch on the CPU,
# plain CAM and AdvCAM seeds, IRN. Settings are scaled to the toy images; everything else is default.
# ------------------------------------------------------------------------------------------------
OUT=${OUT:-demo_out}
TOY=${TOY_VOC:-toy_voc}
RES="$OUT/results.json"
LISTS="$TOY/ImageSets/Segmentation"
mkdir -p "$OUT"
[ -f "$LISTS/train_aug.txt" ] || $PY -m advcam.tools.make_toy_voc --out "$TOY"
echo "No VOC root configured: running the toy demo on $TOY (set VOC12_ROOT or --voc12_root for real VOC)."
rm -f "$RES"
COMMON=(--voc12_root "$TOY" --val_list "$LISTS/val.txt" --cam_scales 1.0
        --cam_weights_name "$OUT/sess/res50_cam.pth" --irn_weights_name "$OUT/sess/lite0_irn.pth"
        --log_name "$OUT/demo" --results_json "$RES" --seed 0)

# 1. classifier from scratch on train_aug (no ImageNet weights here), plain CAM seeds on train
# (every later output depends on these weights: delete $OUT to start over; a rerun resumes)
if [ -f "$OUT/sess/res50_cam.pth" ]; then
  echo "classifier $OUT/sess/res50_cam.pth exists: not retrained"
else
  $RUN -m advcam.run_sample "${COMMON[@]}" --train_list "$LISTS/train_aug.txt" --no_pretrained True \
      --cam_crop_size 128 --cam_resize_long 112 144 --cam_batch_size 16 --cam_num_epoches 10 \
      --cam_optimizer adam --cam_learning_rate 0.0005 --train_cam_pass True "${EXTRA[@]}"
fi
$RUN -m advcam.run_sample "${COMMON[@]}" --train_list "$LISTS/train.txt" --cam_out_dir "$OUT/cam" \
    --make_cam_pass True --eval_cam_pass True "${EXTRA[@]}"
# 2. AdvCAM seeds on train with the default climbing parameters (T=27, xi=0.08, lambda=7, tau=0.5)
#    (and every climbing step of two images, to $OUT/cam_adv_mask/steps/, for the report's animation)
$RUN -m advcam.obtain_cam_masking --voc12_root "$TOY" --train_list "$LISTS/train.txt" --cam_scales 1.0 \
    --cam_weights_name "$OUT/sess/res50_cam.pth" --cam_out_dir "$OUT/cam_adv_mask" --log_name "$OUT/demo" \
    --save_steps 2100_000006,2100_000010 "${EXTRA[@]}"
# 3. AdvCAM seed quality, IRN relation labels, IRN (its branches over a frozen EfficientNet-Lite0 with the
#    ImageNet weights that install with pip: no ImageNet ResNet-50 here), random-walk masks and their quality.
#    The walk is scaled to the toy's 32 x 24 stride-4 grid: 2^4 steps cover about the share of the image that the
#    reference's 2^8 steps cover on a 125 x 94 VOC grid (16x the cells; a walk's reach grows as sqrt(steps)).
$RUN -m advcam.run_sample "${COMMON[@]}" --train_list "$LISTS/train.txt" --infer_list "$LISTS/train.txt" \
    --cam_out_dir "$OUT/cam_adv_mask" --ir_label_out_dir "$OUT/ir_label" --sem_seg_out_dir "$OUT/sem_seg" \
    --irn_network advcam.nets.efficientnet_lite0_irn --irn_crop_size 128 --irn_batch_size 16 \
    --irn_num_epoches 30 --exp_times 4 \
    --eval_cam_pass True --cam_to_ir_label_pass True --train_irn_pass True --make_sem_seg_pass True \
    --eval_sem_seg_pass True "${EXTRA[@]}"
# 3b. the final segmentation network, trained on the IRN masks of train and scored on val (no ground truth seen):
#     DeepLab-v3 heads (ASPP + a stride-4 decoder) over the frozen ImageNet EfficientNet-Lite0, as the CPU allows
#     (VOC: DeepLab-v2 ResNet-101, 30k iterations, docs/segmentation.md); the AdvCAM recipe's batch of 10 and
#     balanced CE for 600 updates of the head (crops of 128 px, lr 0.01 as the head only trains), multi-scale + flip
#     inference, with and without the dense CRF.
$RUN -m advcam.run_sample "${COMMON[@]}" --sem_seg_out_dir "$OUT/sem_seg" --seg_train_list "$LISTS/train.txt" \
    --seg_infer_list "$LISTS/val.txt" --seg_network efficientnet_lite0_seg --seg_train_backbone False \
    --seg_num_iters 600 --seg_crop_size 128 --seg_scales 0.75 1.0 1.25 1.5 --seg_learning_rate 0.01 \
    --seg_infer_scales 0.75 1.0 1.25 --seg_weights_name "$OUT/sess/lite0_seg.pth" --seg_out_dir "$OUT/seg" \
    --seg_crf_out_dir "$OUT/seg_crf" --train_seg_pass True --make_seg_pass True --eval_seg_pass True "${EXTRA[@]}"
$PY -m advcam.tools.results_table "$RES" "CAM seeds=eval_cam:$OUT/cam" "AdvCAM seeds=eval_cam:$OUT/cam_adv_mask" \
    "IRN masks=eval_sem_seg:$OUT/sem_seg" "Segmentation (val)=eval_seg:$OUT/seg" \
    "Segmentation (val, CRF)=eval_seg:$OUT/seg#crf"
# 4. the report: per-image figures, the climbing animation, the threshold sweep, per-class IoU ($OUT/report/)
REPORT=$($PY -m advcam.tools.report --out "$OUT" --voc12_root "$TOY" | tail -n 1)
echo "Report: $REPORT (its figures in $OUT/report/figures/)"
