"""Predict with an exported model (tools/export.py) through Paddle Inference.

    python tools/infer.py --model_dir output/inference_model --image_path images/ --enable_mkldnn True

See `python tools/infer.py --help`; the logic is in paddle_pssl.deploy.infer.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402  (first: imports zlib before paddle, registers components)
from paddle_pssl.deploy.infer import infer_main  # noqa: E402
from paddle_pssl.utils.cli import run  # noqa: E402

if __name__ == '__main__':
    run(infer_main)
