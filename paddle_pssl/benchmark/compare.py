"""``compare`` tool (tools/compare_finetune.py): fine-tune a baseline and
other configs at the same seeds, evaluate each run, and pair every config with
the baseline by seed (:func:`.stats.paired_difference`).

    python tools/compare_finetune.py --baseline configs/recipes/finetune_imagenet_lite0.yml \\
        --configs configs/recipes/finetune_classifier_backbone.yml configs/recipes/finetune_pssl.yml \\
        --seeds 0 1 2 3 4 --save_dir output/recipe/compare

Each run is the project's own two commands, ``tools/train.py -c <config>
--seed <s>`` and then ``tools/val.py --model_path <run>/iter_<iters>/model.pdparams
--batch_size <eval_batch_size>`` (as ``python -m paddle_pssl train|val``, one
process each), so its mIoU equals a hand-run of those commands. It evaluates
the last iteration: choosing a checkpoint by its score on the same images
would favour the arms with more spread.

A config path holding ``{seed}`` names one config per seed, e.g.
``output/arms/pretrain_seed{seed}/finetune_pssl.yml`` for fine-tuning seed i
from pre-training seed i.

Output under ``--save_dir``: ``<arm>/seed_<s>/`` (train.py's save_dir),
``<arm>/seed_<s>.metrics.json`` (val.py's), ``logs/<arm>_seed<s>.log``,
``compare.md`` (the table, also printed) and ``compare.json``. An arm is
named by its config's file name (``{seed}`` left out).

Running the same command again reuses every finished run whose commands and
inputs (configs, the files they name: datasets, pre-trained weights) are
unchanged, and runs the rest; more seeds or arms add runs. A run killed
before it finished starts again from its first iteration, in its emptied
folder (so train.py's one-run-per-folder rule does not refuse it). A finished
run of other inputs, or a run folder that no compare started (no
``logs/<arm>_seed<s>.log``), is refused unless ``--overwrite``: its results
would be lost.
"""
import argparse
import json
import os
import signal
import sys

from ..utils.errors import PSSLError
from ..utils.io import atomic_write_text
from .jobs import Job, folder_lock, fingerprint, job_done, run_jobs, tool

REPORT = 'compare'


def _arm_name(path):
    """The config's file name without ``.yml`` and ``{seed}``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem.replace('{seed}', '').strip('_-.') or stem


def _named_paths(node):
    """Every string of a config that names an existing file or folder."""
    if isinstance(node, dict):
        for value in node.values():
            yield from _named_paths(value)
    elif isinstance(node, list):
        for value in node:
            yield from _named_paths(value)
    elif isinstance(node, str) and node not in ('.', '/') and os.path.exists(node):
        yield node


def plan(args):
    """{job name: (arm, seed, Job, metrics path)} for every arm and seed."""
    from ..config import load_config
    configs = [args.baseline] + [c for c in args.configs]
    names = [_arm_name(c) for c in configs]
    if len(set(names)) != len(names):
        raise PSSLError(f"--baseline/--configs: two configs share a file name ({', '.join(names)}); "
                        'each arm is named by its file name')
    if len(set(args.seeds)) != len(args.seeds):
        raise PSSLError(f'--seeds {" ".join(map(str, args.seeds))}: a seed appears twice')
    flags = ([f'--iters={args.iters}'] if args.iters is not None else []) + \
        ([f'--batch_size={args.batch_size}'] if args.batch_size is not None else [])
    opts = ['--opts', *args.opts] if args.opts else []
    jobs = {}
    for pattern, arm in zip(configs, names):
        for seed in args.seeds:
            path = pattern.replace('{seed}', str(seed))
            cfg = load_config(path, batch_size=args.batch_size, iters=args.iters, opts=args.opts)
            if not cfg.dic.get('val_dataset'):
                raise PSSLError(f'{path}: val_dataset is required (every run is evaluated on it)')
            inputs = sorted(set(_named_paths(cfg.dic)))
            run_dir = os.path.join(args.save_dir, arm, f'seed_{seed}')
            metrics = run_dir + '.metrics.json'
            weights = os.path.join(run_dir, f'iter_{cfg.iters}', 'model.pdparams')
            train = [*tool('train'), '-c', path, '--seed', str(seed), '--save_dir', run_dir,
                     '--save_interval', str(cfg.iters), '--keep_checkpoint_max', '1',
                     '--log_iters', str(max(cfg.iters // 10, 1)), '--device', args.device, *flags, *opts]
            val = [*tool('val'), '-c', path, '--model_path', weights, '--batch_size',
                   str(args.eval_batch_size), '--save_json', metrics, '--device', args.device, *opts]
            jobs[f'{arm}_seed{seed}'] = (arm, seed, Job([train, val], inputs=inputs), metrics)
    return names, jobs


def _recorded(log_dir, name):
    """The fingerprint a finished run recorded, or None."""
    try:
        with open(os.path.join(log_dir, f'{name}.done')) as f:
            return json.load(f).get('fingerprint')
    except (OSError, ValueError, AttributeError):
        return None


def table(report):
    """The markdown table of :func:`compare`'s report."""
    from .stats import fmt_difference
    base = report['baseline']
    seeds = ', '.join(map(str, report['seeds']))
    lines = [f"Fine-tuned at seeds {seeds}; mIoU of each run's last iteration on its config's val_dataset; "
             f'each arm minus {base}, paired by seed: mean ± std [95 % interval, Student t]. '
             'Bold: the interval excludes 0.', '',
             f'| arm | mIoU, mean ± std | − {base}, paired [95 %] | per seed | CPU s per run |',
             '| --- | --- | --- | --- | --- |']
    for arm, row in report['arms'].items():
        per_seed = ', '.join(f"{r['miou']:.3f}" for r in row['runs'])
        if arm == base:
            paired = '(baseline)'
        else:
            paired = fmt_difference(row['paired'])
            if row['paired']['resolved']:
                paired = f'**{paired}**'
        cpu = [r.get('cpu_s') for r in row['runs']]
        cpu = f'{sum(cpu) / len(cpu):.0f}' if cpu and None not in cpu else '-'
        lines.append(f"| {arm} | {row['miou_mean']:.3f} ± {row['miou_std']:.3f} | {paired} | "
                     f'{per_seed} | {cpu} |')
    return '\n'.join(lines) + '\n'


def compare(args, log=print):
    """Run (or reuse) every run of :func:`plan`; -> the report, also written
    to ``<save_dir>/compare.json`` and ``compare.md``."""
    from .stats import collect_runs
    names, jobs = plan(args)
    log_dir = os.path.join(args.save_dir, 'logs')
    os.makedirs(log_dir, exist_ok=True)
    with folder_lock(args.save_dir, flag='--save_dir', what='compare'):
        done, stale = [], []
        for name, (_, _, job, _) in jobs.items():
            if job_done(name, job, log_dir):
                done.append(name)
            elif os.path.exists(job.own_dirs()[0]) and (
                    _recorded(log_dir, name) not in (None, fingerprint(job))
                    or not os.path.exists(os.path.join(log_dir, f'{name}.log'))):
                stale.append(name)   # finished with other inputs, or not started by a compare
        if stale and not args.overwrite:
            named = ', '.join(stale[:3]) + (f' and {len(stale) - 3} more' if len(stale) > 3 else '')
            raise PSSLError(f'{args.save_dir}: {len(stale)} finished run(s) of other commands or inputs, '
                            f'or not started by a compare ({named}); to keep them choose another '
                            '--save_dir, to run them again pass --overwrite')
        pending = [n for n in jobs if n not in done]
        log(f'[compare] {len(done)} run(s) reused, {len(pending)} to run'
            + (f": {', '.join(pending)}" if pending else ''))
        cpu = run_jobs({n: j[2] for n, j in jobs.items()}, args.workers, log_dir, resume=True)
        finished = {(arm, seed): metrics for arm, seed, _, metrics in jobs.values()}
        arms = collect_runs(finished, names[0])
    cpu_of = {(arm, seed): cpu.get(name) for name, (arm, seed, _, _) in jobs.items()}
    for arm, row in arms.items():
        row['config'] = ([args.baseline] + list(args.configs))[names.index(arm)]
        for run in row['runs']:
            run['cpu_s'] = cpu_of[(arm, run['seed'])]
    report = {'baseline': names[0], 'seeds': list(args.seeds),
              'arms': {arm: arms[arm] for arm in names},
              'settings': {'iters': args.iters, 'batch_size': args.batch_size,
                           'eval_batch_size': args.eval_batch_size, 'opts': args.opts},
              'fingerprints': {name: fingerprint(j[2]) for name, j in jobs.items()}}
    atomic_write_text(os.path.join(args.save_dir, f'{REPORT}.json'), json.dumps(report, indent=1))
    atomic_write_text(os.path.join(args.save_dir, f'{REPORT}.md'), table(report))
    return report


def compare_main(argv=None):
    p = argparse.ArgumentParser(description='Fine-tune configs at the same seeds and pair each with '
                                            'a baseline (mean difference with its 95 % interval).')
    p.add_argument('--baseline', required=True, help='config every other is paired with')
    p.add_argument('--configs', nargs='+', required=True, help='the other configs (arms)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    p.add_argument('--save_dir', default='output/compare')
    p.add_argument('--iters', type=int, default=None, help='overrides every config\'s iters')
    p.add_argument('--batch_size', type=int, default=None, help='overrides every config\'s batch_size')
    p.add_argument('--eval_batch_size', type=int, default=8, help='tools/val.py --batch_size')
    p.add_argument('--workers', type=int, default=1,
                   help='runs at once (Paddle computes on one core per process on CPU)')
    p.add_argument('--overwrite', action='store_true',
                   help='run again the finished runs whose commands or inputs changed (their '
                        'results are deleted)')
    p.add_argument('-o', '--opts', nargs='+', default=None,
                   help='key=value for every config, e.g. model.backbone.output_stride=8')
    p.add_argument('--device', default='cpu', choices=['cpu', 'gpu', 'xpu', 'npu', 'mlu'])
    args = p.parse_args(argv)
    for name in ('iters', 'batch_size', 'eval_batch_size', 'workers'):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise PSSLError(f'--{name} {value}: must be an integer >= 1')
    # a kill (SIGTERM) unwinds like Ctrl-C, so the running runs are stopped with it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    report = compare(args)
    print(table(report), end='')
    print(f"[compare] {os.path.join(args.save_dir, REPORT)}.md, .json")
    return report
