# Sourced by get_mask_quality.sh and get_seed_quality.sh with --dataset coco14, after voc_root_args.sh. Without a
# COCO root (COCO_DIR empty: no --coco_root, no COCO_ROOT) it builds the toy COCO root $TOY_COCO (default toy_coco/)
# with make_toy_coco and its masks with make_coco_masks, and sets TOY=1, OUT (default demo_coco/) and LISTS (the
# toy's list flags); on a real root TOY=0, OUT (default result/) and LISTS empty (the shipped coco14/ lists). Then
# checks the root with check_coco, stopping the script when it fails (the VOC branch does the same with check_voc).
# On the toy it then trains the toy's classifier and writes the AdvCAM seeds $OUT/cam_adv_mask/, and sets TOY_COMMON
# (the flags every later pass of the toy takes). RES is $OUT/results.json.
if [ -z "$COCO_DIR" ]; then
  TOY=1
  COCO_DIR=${TOY_COCO:-toy_coco}
  OUT=${OUT:-demo_coco}
  mkdir -p "$OUT"
  if [ ! -f "$COCO_DIR/val14.txt" ]; then
    # 96 train / 32 val images of 128 x 96 px (the toy VOC demo's image size), six real COCO categories
    $PY -m advcam.tools.make_toy_coco --out "$COCO_DIR" --n_train 96 --n_val 32
  fi
  echo "No COCO root configured: running the toy COCO demo on $COCO_DIR (set COCO_ROOT or --coco_root for real COCO)."
  for split in train2014 val2014; do  # masks that exist are kept: seconds on a rerun
    $PY -m advcam.tools.make_coco_masks --coco_root "$COCO_DIR" --split "$split" --no_progress
  done
  LISTS=(--train_list "$COCO_DIR/train14.txt" --val_list "$COCO_DIR/val14.txt")
else
  TOY=0
  OUT=${OUT:-result}
  mkdir -p "$OUT"
  LISTS=()
fi
# every listed image of the splits COCO_SPLITS (default both) has its json entry, JPEG and ground-truth mask (stops here if not)
# shellcheck disable=SC2086
$PY -m advcam.tools.check_coco --coco_root "$COCO_DIR" --split ${COCO_SPLITS:-train2014 val2014} "${LISTS[@]}" 2>&1 | tee "$OUT/check_coco.log"
RES="$OUT/results.json"
if [ "$TOY" = 1 ]; then
  # the toy's flags of every pass: its lists, its classifier and IRN weights under $OUT, scored on its train list
  TOY_COMMON=(--dataset coco14 --coco_root "$COCO_DIR" "${LISTS[@]}" --infer_list "$COCO_DIR/train14.txt"
              --chainer_eval_set "$COCO_DIR/train14.txt" --cam_scales 1.0 --cam_weights_name "$OUT/sess/res50_cam.pth"
              --irn_weights_name "$OUT/sess/lite0_irn.pth" --log_name "$OUT/demo" --results_json "$RES" --seed 0)
  rm -f "$RES"
  # The toy's classifier: a ResNet-50 from scratch (80 outputs, no ImageNet weights here) with the toy VOC demo's
  # settings on the same 128 x 96 images (every later output depends on it: delete $OUT to start over).
  if [ -f "$OUT/sess/res50_cam.pth" ]; then
    echo "classifier $OUT/sess/res50_cam.pth exists: not retrained"
  else
    $RUN -m advcam.run_sample "${TOY_COMMON[@]}" --no_pretrained True --cam_crop_size 128 --cam_resize_long 112 144 \
        --cam_batch_size 16 --cam_num_epoches 10 --cam_optimizer adam --cam_learning_rate 0.0005 \
        --train_cam_pass True "${EXTRA[@]}"
  fi
  # AdvCAM seeds of the toy's train list with the default climbing (T=27, xi=0.08, lambda=7, tau=0.5)
  $RUN -m advcam.obtain_cam_masking --dataset coco14 --coco_root "$COCO_DIR" --train_list "$COCO_DIR/train14.txt" \
      --cam_scales 1.0 --cam_weights_name "$OUT/sess/res50_cam.pth" --cam_out_dir "$OUT/cam_adv_mask" \
      --log_name "$OUT/demo" "${EXTRA[@]}"
fi
