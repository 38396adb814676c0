#!/usr/bin/env bash
# The prepared GPU check (scripts/gpu_check.py): every figure a GPU machine should measure, in one command.
#
#   bash scripts/gpu_check.sh OUT_DIR [--tiny] [--steps A,B] [--budget_s S]
#
# Writes OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.log. On one H100/H200 it ends within 9 minutes (each step has
# its own time limit inside; the outer `timeout` is only a guard: on SIGTERM the script kills its running step and
# writes the JSON). Without CUDA it runs the tiny mode on the CPU (three to four minutes on 2 cores).
# Exit status: 0 every step succeeded, 1 some step failed (see the JSON's "steps"), 124/143 the guard fired.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: bash scripts/gpu_check.sh OUT_DIR [gpu_check.py flags]" >&2
  exit 2
fi
OUT=$1
shift
exec timeout --kill-after 10 "${GPU_CHECK_GUARD_S:-565}" "${PYTHON:-python}" scripts/gpu_check.py --out "$OUT" "$@"
