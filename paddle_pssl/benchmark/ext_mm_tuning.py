"""Benchmark extension ``mm_tuning``: target mIoU with and without
Mix-and-Match tuning after each initialisation.

For each init of the main fine-tuning step and each seed, M&M tuning runs on
the target train set from that init (tools/train.py with configs/mm_tuning/
deeplabv3p_resnet18_vd_benchmark.yml, at that seed), then the usual
fine-tuning at the same seed starts from the tuned checkpoint and is
evaluated on the test split. Tuning per seed, not once per init: one tuning
draw moved a fine-tuned mIoU by ~0.06 here, more than the effect measured,
so the spread must include it. The "without" column is the main run's
fine-tuning of the same init; the gain is paired by seed.
"""
import json
import os

import numpy as np

from ..utils.errors import PSSLError
from ..config import load_yaml, merge_dicts, mm_tuning_settings
from .common import INITS, config_path, scaled

TUNE_CONFIG = 'configs/mm_tuning/deeplabv3p_resnet18_vd_benchmark.yml'


def _tune_settings():
    path = config_path(TUNE_CONFIG)
    return mm_tuning_settings(load_yaml(path).get('mm_tuning'), path=path)


def _pm(values):
    return f'{np.mean(values):.3f} ± {np.std(values):.3f}'


def run(bench):
    cfg, out = bench.cfg, bench.out
    settings = _tune_settings()
    options = dict(cfg['extension_options'].get('mm_tuning') or {})
    unknown = set(options) - {'iters'}
    if unknown:
        raise PSSLError(f'benchmark extension_options.mm_tuning: unknown keys {sorted(unknown)}')
    settings['iters'] = int(options.get('iters', settings['iters']))
    iters = scaled(settings['iters'], cfg['scale'])
    with open(bench.target['train_path']) as f:
        n_train = sum(1 for line in f if line.strip())
    per_step = min(int(settings['images_per_step']), n_train)
    base, starts = bench.target_overrides(), bench.init_overrides()
    without = bench.results.get('finetune') or {}
    keys = [k for k in INITS if k in starts and k in without]   # the four rows M&M was measured on
    if not keys:
        raise PSSLError('extension mm_tuning: the main fine-tuning produced no results')

    ft_iters = scaled(cfg['finetune']['iters'], cfg['scale'])
    jobs, metrics, tuned = {}, {}, {}
    for seed in cfg['seeds']:
        for key in keys:
            # one chain per (init, seed): tune, fine-tune, evaluate
            name = f'{key}_seed{seed}'
            start = starts[key](seed) if callable(starts[key]) else starts[key]
            tune, tuned[(key, seed)] = bench._job(
                TUNE_CONFIG, merge_dicts(base, start), os.path.join(out, 'mm_tuning', name), iters,
                seed, per_step)
            save_dir = os.path.join(out, 'mm_finetune', name)
            finetune, _ = bench._job(
                cfg['finetune']['config'], merge_dicts(base, {'model': {'pretrained': tuned[(key, seed)]}}),
                save_dir, ft_iters, seed, cfg['finetune']['batch_size'], evaluate=True)
            jobs[f'mm_{name}'] = tune + finetune
            metrics[(key, seed)] = save_dir + '.metrics.json'
    bench.run_jobs(jobs)

    from ..utils.vdl import read_scalars
    rows, details = [], {}
    for key in keys:
        with_mm, curves = [], []
        for seed in cfg['seeds']:
            with open(metrics[(key, seed)]) as f:
                with_mm.append(json.load(f)['miou'])
            curves.append(read_scalars(os.path.join(out, 'mm_tuning', f'{key}_seed{seed}'), 'Train/loss'))
        base_runs = {r['seed']: r['miou'] for r in without[key]['runs']}
        plain = [base_runs[s] for s in cfg['seeds']]
        gain = [w - p for w, p in zip(with_mm, plain)]
        first, last = [c[0] for c in curves if c], [c[-1] for c in curves if c]
        rows.append([INITS[key], _pm(plain), _pm(with_mm), f'{np.mean(gain):+.3f} ± {np.std(gain):.3f}',
                     ', '.join(f'{v:.3f}' for v in with_mm),
                     f'{np.mean(first):.3f} → {np.mean(last):.3f}' if first else 'n/a'])
        details[key] = {'without': plain, 'with': with_mm, 'gain': gain,
                        'tuned': [tuned[(key, s)] for s in cfg['seeds']], 'triplet_loss': curves}
    kept = [v for key in keys for seed in cfg['seeds'] for v in read_scalars(
        os.path.join(out, 'mm_tuning', f'{key}_seed{seed}'), 'Triplet/patches')]
    s = settings['sampler']
    note = (f"M&M tuning: {iters} iterations of {per_step} images ({s['num_patches']} patches asked "
            f"per image, {np.mean(kept) / per_step if kept else float('nan'):.1f} kept by the overlap rule, "
            f"side {s['min_size']}-{s['max_size']} px resized to {s['out_size']}, "
            f"{s['fg_ratio']:.0%} foreground, {s['oversample']}x oversampling, "
            f"≤{s['max_overlap']:.0%} overlap), triplet margin {settings['margin']}, SGD lr "
            f"{settings['learning_rate']} (x{settings['decay_factor']} at {settings['decay_at']:.0%}), "
            f"backbone only ({TUNE_CONFIG}), then the same fine-tuning as above ({ft_iters} iterations); "
            "both at each seed. Gain is paired by seed. Triplet loss: first and last logged window, "
            "mean over seeds.")
    return {'title': f"Mix-and-Match tuning: target test mIoU (mean ± std over seeds {cfg['seeds']})",
            'header': ['initialisation', 'without M&M', 'with M&M', 'gain', 'with M&M per seed',
                       'triplet loss'],
            'rows': rows, 'note': note, 'details': details}
