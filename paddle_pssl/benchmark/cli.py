"""``benchmark`` tool: the controlled end-to-end PSSL benchmark (:mod:`.run`).

    python tools/benchmark_pssl.py                       # default size (docs/benchmark.md)
    python tools/benchmark_pssl.py --scale 4 --seeds 0 1 2 3 4
    python tools/benchmark_pssl.py -c configs/benchmark/tiny.yml --out output/benchmark_tiny
    python tools/benchmark_pssl.py --out output/benchmark --resume   # after a kill: reuse finished jobs
"""
import argparse
import os
import signal
import sys


def benchmark_main(argv=None):
    from ..config import apply_opts, load_yaml, validate
    from .run import run_benchmark
    p = argparse.ArgumentParser(description='Controlled end-to-end PSSL benchmark.')
    p.add_argument('-c', '--config', dest='cfg', default=None, help='benchmark YAML (default: built-in)')
    p.add_argument('--out', default='output/benchmark')
    p.add_argument('--scale', type=float, default=None, help='multiply image counts and iterations')
    p.add_argument('--seeds', type=int, nargs='+', default=None)
    p.add_argument('--resume', action='store_true',
                   help='reuse the jobs that finished in --out with the same inputs (logs/<job>.done)')
    p.add_argument('-o', '--opts', nargs='+', default=None)
    args = p.parse_args(argv)
    cfg = load_yaml(args.cfg, args.opts) if args.cfg else apply_opts({}, args.opts)
    if args.scale is not None:
        cfg['scale'] = args.scale
    if args.seeds is not None:
        cfg['seeds'] = args.seeds
    validate('benchmark', cfg, args.cfg or 'benchmark config')   # refused before any work
    # a kill (SIGTERM) unwinds like Ctrl-C, so the running jobs are stopped with it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    results = run_benchmark(cfg, args.out, resume=args.resume)
    with open(os.path.join(args.out, f"{results['config']['report_name']}.md")) as f:
        print(f.read())
    return results
