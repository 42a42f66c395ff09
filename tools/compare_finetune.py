"""Fine-tune configs at the same seeds and pair each with a baseline
(paddle_pssl/benchmark/compare.py; docs/own_data.md, "Comparing the three").

    python tools/compare_finetune.py --baseline configs/recipes/finetune_imagenet_lite0.yml \
        --configs configs/recipes/finetune_classifier_backbone.yml configs/recipes/finetune_pssl.yml \
        --seeds 0 1 2 3 4 --save_dir output/recipe/compare
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402,F401  (first: zlib before paddle)
from paddle_pssl.benchmark.compare import compare_main  # noqa: E402
from paddle_pssl.utils.cli import run  # noqa: E402

if __name__ == '__main__':
    run(compare_main)
