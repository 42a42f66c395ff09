#!/usr/bin/env bash
# Build the data a TIPC mode needs, locally, with the project's seeded data
# maker (paddle_pssl.datasets.toy): no downloads, no network.
#   bash test_tipc/prepare.sh test_tipc/configs/<model>/train_infer_python.txt lite_train_lite_infer
# Python: $PYTHON if set, else the txt's "python:" value, else python.
set -o errexit
set -o nounset
set -o pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: bash test_tipc/prepare.sh <train_infer_python.txt> <mode>" >&2
    exit 2
fi
FILENAME=$(realpath "$1")
MODE=$2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"   # the txt's paths are relative to the repository root
source test_tipc/common_func.sh

mapfile -t lines < "${FILENAME}"
model_name=$(func_parser_value "${lines[1]}")
python_bin=${PYTHON:-$(func_parser_value "${lines[2]}")}
python_bin=${python_bin:-python}

# one lite set serves every model: a PSSL label store (source) and a target set
DATA_DIR=test_tipc/data/pssl_lite
BUILD_PY="
import sys
from paddle_pssl.datasets import toy
root = sys.argv[1]
toy.make_toy_pssl(root + '/source', num_classes=4, images_per_class=4, image_size=(64, 80), seed=0)
toy.make_toy_segmentation(root + '/target', num_classes=3, num_train=8, num_val=4, image_size=(64, 80), seed=1)
"

build_lite_data() {
    # the stamp is the maker's code: a changed recipe rebuilds, an unchanged one is kept
    if [[ -f ${DATA_DIR}/.complete ]] && [[ $(cat "${DATA_DIR}/.complete") == "$(echo "${BUILD_PY}")" ]]; then
        echo "lite data present: ${DATA_DIR}"
        return
    fi
    # build beside, then move into place: a killed run leaves no half set
    local tmp="${DATA_DIR}.tmp.$$"
    rm -rf "${tmp}"
    "${python_bin}" -c "${BUILD_PY}" "${tmp}"
    echo "${BUILD_PY}" > "${tmp}/.complete"
    rm -rf "${DATA_DIR}"
    mv "${tmp}" "${DATA_DIR}"
    echo "lite data written: ${DATA_DIR} (source: 16 images in 4 classes + label store; target: 8 train / 4 val, 3 classes)"
}

mkdir -p test_tipc/data "test_tipc/output/${model_name}"
case "${MODE}" in
    lite_train_lite_infer|lite_train_whole_infer|whole_infer)
        build_lite_data
        ;;
    whole_train_whole_infer)
        echo "whole_train_whole_infer is not supported: it needs ImageNet, a PSSL label store and a" >&2
        echo "target set (e.g. VOC), which are not downloaded here; run configs/pretrain and" >&2
        echo "configs/finetune on your own copies instead (see test_tipc/README.md)." >&2
        exit 2
        ;;
    *)
        echo "mode ${MODE} is not supported (see test_tipc/README.md)" >&2
        exit 2
        ;;
esac
