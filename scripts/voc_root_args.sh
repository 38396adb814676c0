# Sourced by get_mask_quality.sh and get_seed_quality.sh: split "$@" into VOC_ROOT (from --voc12_root or
# the VOC12_ROOT environment variable) and EXTRA (every other argument, passed on to the Python passes).
VOC_ROOT="${VOC12_ROOT:-}"
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --voc12_root) VOC_ROOT="$2"; shift 2 ;;
    --voc12_root=*) VOC_ROOT="${1#*=}"; shift ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done
