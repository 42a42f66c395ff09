"""python tools/inspect_pssl.py --pssl_root <store> [--image_root <images>] [--num 16]"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402,F401  (first: zlib before paddle)
from paddle_pssl.pseudo_labels.inspect import inspect_main  # noqa: E402
from paddle_pssl.utils.cli import run  # noqa: E402

if __name__ == '__main__':
    run(inspect_main)
