"""python tools/eval_pseudo_labels.py --pssl_root <store> --gt_root <masks>"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402,F401  (first: zlib before paddle)
from paddle_pssl.tools_impl import eval_labels_main  # noqa: E402
from paddle_pssl.utils.cli import run  # noqa: E402

if __name__ == '__main__':
    run(eval_labels_main)
