"""Train an image classifier (GAP cross-entropy, optionally + HFPL losses):

    python tools/train_cls.py -c configs/classifiers/resnet18_vd_source.yml --use_vdl
    python tools/train_cls.py -c configs/classifiers/resnet18_vd_source_hfpl.yml \
        --save_dir output/cls/r18_hfpl --iters 60 --opts train_dataset.image_root=data/imagenet
    python tools/train_cls.py -c ... --resume output/cls/r18_hfpl/iter_40
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402,F401  (first: imports zlib before paddle)
from paddle_pssl.classification import train_cls_main  # noqa: E402
from paddle_pssl.utils.cli import run  # noqa: E402

if __name__ == '__main__':
    run(train_cls_main)
