#!/usr/bin/env bash
# A clone's entry to the pipeline advcam/data/get_mask_quality.sh (installed: advcam-mask-quality): this clone's
# advcam package comes first on PYTHONPATH. Outputs go under the current folder; --help prints the usage.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
exec bash "$HERE/advcam/data/get_mask_quality.sh" "$@"
