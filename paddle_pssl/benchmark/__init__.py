from .run import run_benchmark
