"""Generate PSSL pseudo labels: python tools/generate_pssl.py -c configs/pseudo_labels/<name>.yml

Resumable (finished images are skipped), shardable (--shard i/N, or one shard
per rank under `python -m paddle.distributed.launch --nproc_per_node N`)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402  (first: imports zlib before paddle)
from paddle_pssl.tools_impl import generate_main  # noqa: E402
from paddle_pssl.utils.cli import run  # noqa: E402

if __name__ == '__main__':
    run(generate_main)
