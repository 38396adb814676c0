# Sourced by get_mask_quality.sh, get_seed_quality.sh and get_semi_quality.sh: split "$@" into DATASET (from
# --dataset, default voc12), VOC_ROOT (from --voc12_root or the VOC12_ROOT environment variable), COCO_DIR (from
# --coco_root or COCO_ROOT; read with --dataset coco14 only) and EXTRA (every other argument, passed on to the Python
# passes); -h / --help prints the sourcing script's usage (its function `usage`) and exits 0. --dataset coco14 is
# refused with one line unless the sourcing script sets COCO_OK=1. Then checks that every flag in EXTRA is one that
# the passes accept (one error line and exit 2 if not), before anything is built or run.
DATASET=voc12
VOC_ROOT="${VOC12_ROOT:-}"
COCO_DIR="${COCO_ROOT:-}"
_GIVEN_VOC= _GIVEN_COCO=
EXTRA=()
_need() { [ "$1" -ge 2 ] || { echo "$SCRIPT: error: $2 needs a value (see --help)" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --voc12_root) _need $# "$1"; VOC_ROOT="$2"; _GIVEN_VOC=1; shift 2 ;;
    --voc12_root=*) VOC_ROOT="${1#*=}"; _GIVEN_VOC=1; shift ;;
    --coco_root) _need $# "$1"; COCO_DIR="$2"; _GIVEN_COCO=1; shift 2 ;;
    --coco_root=*) COCO_DIR="${1#*=}"; _GIVEN_COCO=1; shift ;;
    --dataset) _need $# "$1"; DATASET="$2"; shift 2 ;;
    --dataset=*) DATASET="${1#*=}"; shift ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done
case "$DATASET" in
  voc12) [ -z "$_GIVEN_COCO" ] || { echo "$SCRIPT: error: --coco_root needs --dataset coco14 (see --help)" >&2; exit 2; } ;;
  coco14)
    [ "${COCO_OK:-0}" = 1 ] || { echo "$SCRIPT: error: --dataset coco14 is not supported by this pipeline yet (VOC only; docs/coco.md)" >&2; exit 2; }
    [ -z "$_GIVEN_VOC" ] || { echo "$SCRIPT: error: --voc12_root goes with --dataset voc12; give the COCO root as --coco_root DIR (see --help)" >&2; exit 2; } ;;
  *) echo "$SCRIPT: error: --dataset $DATASET: expected voc12 or coco14 (see --help)" >&2; exit 2 ;;
esac
if [ ${#EXTRA[@]} -gt 0 ]; then
  $PY -m advcam.tools.pipelines check "$KIND" "${EXTRA[@]}" || exit 2
fi
