#!/usr/bin/env bash
# Semi-supervised segmentation the AdvCAM way (CCT with AdvCAM+IRN masks as weak labels) and its baselines, scored on
# val with multi-scale + flip inference, without and with the dense CRF. Installed as advcam-semi-quality; in a
# clone, bash get_semi_quality.sh runs this file. Outputs go under the current folder. docs/semi.md has the details.
set -euo pipefail
SCRIPT=get_semi_quality.sh
KIND=semi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=${PYTHON:-python}
RUN=${LAUNCH:-$PY}  # the passes' launcher (README: multi-GPU and multi-node)

usage() {
  cat <<'USAGE'
usage: get_semi_quality.sh [--voc12_root DIR] [PASS FLAGS ...]      (installed: advcam-semi-quality ...)

Semi-supervised CCT with the AdvCAM masks as weak labels, and its baselines, scored on val (multi-scale + flip,
without and with the dense CRF); writes $OUT/semi_results.json {"supervised_only", "cct", "cct_weak"} (mIoU %,
multi-scale + flip, no CRF) and prints the table.

  get_semi_quality.sh                          no VOC root: the toy demo on the CPU (toy_voc/, the pseudo masks of
                                               demo_out/sem_seg; when absent, made by the mask demo's passes that
                                               make them, without its evaluations; CCT over EfficientNet-Lite0,
                                               scaled-down steps, batches and crops)
  get_semi_quality.sh --voc12_root DIR         real VOC 2012 + SBD: CCT over ResNet-50 with the paper's recipe on
                                               the 1,464 train images + the masks of result/sem_seg (72,960 steps
                                               per mode; SEMI_MODES chooses the modes)
  VOC12_ROOT=DIR get_semi_quality.sh           the same

Every other argument is passed to each pass (python -m advcam.run_sample; its --help lists the --semi_* flags),
e.g. --semi_labeled_list 500 --device cuda:1. A rerun resumes where the last one stopped.

environment:
  OUT          output folder (default: result/ on a real root, demo_out/ for the toy demo)
  TOY_VOC      the toy VOC folder (default: toy_voc/; generated when it has no lists)
  SEMI_MODES   the trainings, in order (default: "supervised cct cct_weak naive_mix" on the toy, "cct_weak" on VOC);
               naive_mix = the same network, supervised, on ground truth for the labelled images and the pseudo
               masks for the others, treated alike
  SEMI_STEPS   toy demo: training steps per mode (default: 80)
  PYTHON       the Python interpreter (default: python)
  LAUNCH       the passes' launcher, e.g. LAUNCH="torchrun --standalone --nproc_per_node 8" (default: $PYTHON)
USAGE
}

source "$HERE/voc_root_args.sh" "$@"

# train MODE, then make_seg + eval_seg on the val list, in one run of the passes (run_sample runs train_semi, make_seg,
# eval_seg in that order); $COMMON, $TRAIN_FLAGS, $SEG_FLAGS, $OUT, $NET set by the caller
run_mode() {
  local mode="$1" flags=()
  case "$mode" in
    naive_mix) flags=(--semi_mode supervised --semi_labeled_list "$OUT/semi/all.txt"
                      --semi_label_dir "$OUT/semi/naive_mix_labels") ;;
    *) flags=(--semi_mode "$mode") ;;
  esac
  $RUN -m advcam.run_sample "${COMMON[@]}" "${TRAIN_FLAGS[@]}" "${flags[@]}" "${SEG_FLAGS[@]}" \
      --semi_weights_name "$OUT/sess/semi_$mode.pth" --seg_network "$NET" \
      --seg_weights_name "$OUT/sess/semi_$mode.pth" --seg_out_dir "$OUT/semi/$mode/seg" \
      --seg_crf_out_dir "$OUT/semi/$mode/seg_crf" --log_name "$OUT/semi/$mode" \
      --train_semi_pass True --make_seg_pass True --eval_seg_pass True "${EXTRA[@]}"
}

# the naive mix's label folder and its list (every training image): advcam.semi.naive_mix_labels
naive_mix_folder() {
  $PY - "$1" "$2" "$3" "$4" "$OUT/semi" <<'PY'
import os, sys
from advcam.semi import naive_mix_labels, semi_split_path, unlabeled_names
from advcam.voc12.dataloader import load_img_name_list
train_list, labeled_list, gt_dir, weak_dir, out = sys.argv[1:6]
root = os.environ.get("SEMI_ROOT", ".")
train = load_img_name_list(train_list, root)
labeled = load_img_name_list(semi_split_path(labeled_list), root)
naive_mix_labels(os.path.join(out, "naive_mix_labels"), labeled, gt_dir, unlabeled_names(train, labeled), weak_dir)
with open(os.path.join(out, "all.txt"), "w") as f:
    f.write("\n".join(dict.fromkeys(train)) + "\n")
PY
}

# The toy's pseudo masks $OUT/sem_seg/<id>.png of $LISTS/train.txt, made by exactly the commands of the mask demo
# (get_mask_quality.sh's toy steps 1-3, the same flags, so the same masks; every pass reseeds, so leaving passes out
# changes nothing; test_semi_demo_makes_the_masks_as_the_mask_demo checks that the two scripts agree) but only the
# passes the masks need: the classifier (train_cam), the AdvCAM seeds (with the two images' climbing steps of the mask demo's report), cam_to_ir_label, train_irn and
# make_sem_seg. Left out: the plain-CAM seeds, every evaluation, the segmentation network and the report; a later
# get_mask_quality.sh with the same OUT resumes from these files and adds them. $OUT, $TOY, $LISTS set by the caller.
make_toy_masks() {
  local common=(--voc12_root "$TOY" --val_list "$LISTS/val.txt" --cam_scales 1.0
                --cam_weights_name "$OUT/sess/res50_cam.pth" --irn_weights_name "$OUT/sess/lite0_irn.pth"
                --log_name "$OUT/demo" --results_json "$OUT/results.json" --seed 0)
  if [ -f "$OUT/sess/res50_cam.pth" ]; then
    echo "classifier $OUT/sess/res50_cam.pth exists: not retrained"
  else
    $RUN -m advcam.run_sample "${common[@]}" --train_list "$LISTS/train_aug.txt" --no_pretrained True \
        --cam_crop_size 128 --cam_resize_long 112 144 --cam_batch_size 16 --cam_num_epoches 10 \
        --cam_optimizer adam --cam_learning_rate 0.0005 --train_cam_pass True
  fi
  $RUN -m advcam.obtain_cam_masking --voc12_root "$TOY" --train_list "$LISTS/train.txt" --cam_scales 1.0 \
      --cam_weights_name "$OUT/sess/res50_cam.pth" --cam_out_dir "$OUT/cam_adv_mask" --log_name "$OUT/demo" \
      --save_steps 2100_000006,2100_000010
  $RUN -m advcam.run_sample "${common[@]}" --train_list "$LISTS/train.txt" --infer_list "$LISTS/train.txt" \
      --cam_out_dir "$OUT/cam_adv_mask" --ir_label_out_dir "$OUT/ir_label" --sem_seg_out_dir "$OUT/sem_seg" \
      --irn_network advcam.nets.efficientnet_lite0_irn --irn_crop_size 128 --irn_batch_size 16 \
      --irn_num_epoches 30 --exp_times 4 \
      --cam_to_ir_label_pass True --train_irn_pass True --make_sem_seg_pass True
}

# the table and $OUT/semi_results.json from the eval_seg results in $RES
report() {
  $PY - "$RES" "$OUT" "$@" <<'PY'
import json, os, sys
from advcam.io import atomic_path
res_path, out, modes = sys.argv[1], sys.argv[2], sys.argv[3:]
results = json.load(open(res_path))
names = {"supervised": "supervised_only", "cct": "cct", "cct_weak": "cct_weak", "naive_mix": "naive_mix"}
rows, summary = [], {}
for m in modes:
    r = results.get(f"eval_seg:{os.path.join(out, 'semi', m, 'seg')}")
    if r is None:
        sys.exit(f"get_semi_quality.sh: error: {res_path} has no eval_seg result for {m}")
    if m != "naive_mix":  # semi_results.json: the three CCT-code trainings
        summary[names[m]] = round(100 * r["miou"], 2)
    rows.append((names[m], 100 * r["miou"], 100 * r["crf"]["miou"] if "crf" in r else float("nan")))
print(f"\n{'training':<16}  {'MS+flip':>8}  {'+CRF':>8}   (val mIoU %)")
print("-" * 40)
for name, a, b in rows:
    print(f"{name:<16}  {a:8.2f}  {b:8.2f}")
with atomic_path(os.path.join(out, "semi_results.json")) as tmp, open(tmp, "w") as f:
    json.dump(summary, f, indent=1)
print(f"\nwrote {os.path.join(out, 'semi_results.json')}")
PY
}

if [ -n "$VOC_ROOT" ]; then
  # Real VOC: the paper's setting. The weak masks are the mask pipeline's result/sem_seg (get_mask_quality.sh
  # --voc12_root DIR makes them on train_aug); the labelled list is the 1,464 train images (--semi_labeled_list N
  # for a shipped split); the ResNet-50 starts from torchvision's ImageNet weights (--semi_pretrained PATH offline).
  OUT=${OUT:-result}
  RES="$OUT/semi_results_all.json"
  NET=cct_resnet50
  MODES=(${SEMI_MODES:-cct_weak})
  mkdir -p "$OUT/semi"
  COMMON=(--voc12_root "$VOC_ROOT" --results_json "$RES" --seed 0)
  TRAIN_FLAGS=(--semi_network "$NET" --semi_weak_label_dir "$OUT/sem_seg")
  SEG_FLAGS=(--seg_infer_list voc12/val.txt)
  for m in "${MODES[@]}"; do
    if [ "$m" = naive_mix ]; then
      SEMI_ROOT="$VOC_ROOT" naive_mix_folder voc12/train_aug.txt 1464 "$VOC_ROOT/SegmentationClassAug" "$OUT/sem_seg"
    fi
    run_mode "$m"
  done
  report "${MODES[@]}"
  exit 0
fi

# ------------------------------------------------------------------------------------------------
# Toy demo (no VOC here). The toy's pseudo masks cover its train list (the first half of train_aug: the mask
# demo runs AdvCAM and IRN on those 80 images), so the toy pool is train: every 8th image (10) labelled, the other 70
# unlabelled with their AdvCAM+IRN masks. CCT over the pip EfficientNet-Lite0; crops, batches and steps scaled to
# two CPU cores (SEMI_STEPS steps of 4 + 4 crops of 96 px); every mode gets the same steps, seed and schedule.
# ------------------------------------------------------------------------------------------------
OUT=${OUT:-demo_out}
TOY=${TOY_VOC:-toy_voc}
RES="$OUT/semi_results_all.json"
LISTS="$TOY/ImageSets/Segmentation"
NET=cct_efficientnet_lite0
MODES=(${SEMI_MODES:-supervised cct cct_weak naive_mix})
STEPS=${SEMI_STEPS:-80}
mkdir -p "$OUT/semi"
[ -f "$LISTS/train_aug.txt" ] || $PY -m advcam.tools.make_toy_voc --out "$TOY"
echo "No VOC root configured: running the semi-supervised toy demo on $TOY (set VOC12_ROOT or --voc12_root for VOC)."
missing=0
case " ${MODES[*]} " in *" cct_weak "*|*" naive_mix "*)  # the modes that read the pseudo masks
  missing=$(while read -r id; do [ -f "$OUT/sem_seg/$id.png" ] || echo "$id"; done < "$LISTS/train.txt" | wc -l) ;;
esac
if [ "$missing" -gt 0 ]; then
  echo "$OUT/sem_seg lacks $missing pseudo masks of $LISTS/train.txt: making them with the passes of" \
       "get_mask_quality.sh that make them (its classifier, AdvCAM seeds, IRN; most of the demo's time)"
  T0=$SECONDS
  make_toy_masks
  echo "made the pseudo masks of $LISTS/train.txt in $((SECONDS - T0)) s"
fi
awk 'NR % 8 == 1' "$LISTS/train.txt" > "$OUT/semi/labeled.txt"  # the toy split: 10 of the 80
COMMON=(--voc12_root "$TOY" --results_json "$RES" --seed 0)
TRAIN_FLAGS=(--semi_network "$NET" --semi_train_list "$LISTS/train.txt" --semi_labeled_list "$OUT/semi/labeled.txt"
             --semi_weak_label_dir "$OUT/sem_seg" --semi_val_list "$LISTS/val.txt" --semi_num_iters "$STEPS"
             --semi_batch_size 4 --semi_unlabeled_batch_size 4 --semi_crop_size 96 --semi_scales 0.75 1.0
             --semi_val_every 0 --semi_checkpoint_every 20)
SEG_FLAGS=(--seg_infer_list "$LISTS/val.txt")
for m in "${MODES[@]}"; do
  if [ "$m" = naive_mix ]; then
    SEMI_ROOT="$TOY" naive_mix_folder "$LISTS/train.txt" "$OUT/semi/labeled.txt" "$TOY/SegmentationClass" \
        "$OUT/sem_seg"
  fi
  T0=$SECONDS
  run_mode "$m"
  echo "$m: trained and scored in $((SECONDS - T0)) s"
done
report "${MODES[@]}"
