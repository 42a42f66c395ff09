"""The controlled end-to-end PSSL benchmark (paddle_pssl/benchmark/).

    python tools/benchmark_pssl.py                       # default size, about 15 min on 2 cores
    python tools/benchmark_pssl.py --scale 4 --seeds 0 1 2 3 4
    python tools/benchmark_pssl.py -c configs/benchmark/tiny.yml --out output/benchmark_tiny
    python tools/benchmark_pssl.py --out output/benchmark --resume   # after a kill: reuse finished jobs
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402,F401  (first: zlib before paddle)
from paddle_pssl.benchmark.cli import benchmark_main  # noqa: E402
from paddle_pssl.utils.cli import run  # noqa: E402

if __name__ == '__main__':
    run(benchmark_main)
