"""Train a segmentation model from a PaddleSeg-schema config.

    python tools/train.py -c configs/pretrain/pspnet_resnet50_vd_pssl.yml --use_vdl
    python tools/train.py -c configs/finetune/pspnet_resnet50_vd_voc12aug_pssl.yml --do_eval
    python -m paddle.distributed.launch --gpus 0,1,2,3 tools/train.py -c ...
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402  (first: imports zlib before paddle, registers components)
from paddle_pssl.tools_impl import train_main  # noqa: E402
from paddle_pssl.utils.cli import run  # noqa: E402

if __name__ == '__main__':
    run(train_main)
