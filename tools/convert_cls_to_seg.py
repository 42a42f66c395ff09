"""Convert a classifier's weights into a PaddleSeg backbone's (for model.backbone.pretrained):

    python tools/convert_cls_to_seg.py --weights output/cls/model.pdparams \
        --backbone ResNet18_vd --out output/cls/resnet18_vd_backbone.pdparams
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402,F401  (first: imports zlib before paddle)
from paddle_pssl.classifiers.convert import convert_main  # noqa: E402
from paddle_pssl.utils.cli import run  # noqa: E402

if __name__ == '__main__':
    run(convert_main)
