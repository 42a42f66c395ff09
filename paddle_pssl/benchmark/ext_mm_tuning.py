"""Benchmark extension ``mm_tuning``: target mIoU with and without
Mix-and-Match tuning after each initialisation.

For each init of the main fine-tuning step, M&M tuning runs once on the
target train set (tools/train.py with configs/mm_tuning/
deeplabv3p_resnet18_vd_benchmark.yml, at the benchmark's seed, as the
pre-trainings do), then the usual fine-tuning starts from the tuned
checkpoint for every seed and is evaluated on the test split. The "without"
column is the main run's fine-tuning of the same init.
"""
import glob
import json
import os

import numpy as np

from ..utils.errors import PSSLError
from .run import INITS, _merge, _repo_path, _scaled, run_jobs

TUNE_CONFIG = 'configs/mm_tuning/deeplabv3p_resnet18_vd_benchmark.yml'


def _tune_settings():
    from ..tools_impl import _load_plain_config
    block = _load_plain_config(_repo_path(TUNE_CONFIG), None).get('mm_tuning') or {}
    from ..mm_tuning.train import mm_settings
    return mm_settings(block)


def _loss_curve(log_dir):
    """Train/loss points of a run's VisualDL log (first and last for the table)."""
    from visualdl import LogReader
    points = []
    for path in sorted(glob.glob(os.path.join(log_dir, 'vdlrecords.*.log'))):
        reader = LogReader(file_path=path)
        if 'Train/loss' in reader.get_tags().get('scalar', []):
            points += [(r.id, r.value) for r in reader.get_data('scalar', 'Train/loss')]
    return [v for _, v in sorted(points)]


def _pm(values):
    return f'{np.mean(values):.3f} ± {np.std(values):.3f}'


def run(bench):
    cfg, out = bench.cfg, bench.out
    settings = _tune_settings()
    iters = _scaled(settings['iters'], cfg['scale'])
    with open(bench.target['train_path']) as f:
        n_train = sum(1 for line in f if line.strip())
    per_step = min(int(settings['images_per_step']), n_train)
    data = {'dataset_root': bench.target['dataset_root'], 'num_classes': bench.target['num_classes']}
    base = {'model': {'num_classes': bench.target['num_classes']},
            'train_dataset': dict(data, train_path=bench.target['train_path']),
            'val_dataset': dict(data, val_path=bench.target['test_path'])}
    starts = {'a_random': {},
              'b_classifier_backbone': {'model': {'backbone': {'pretrained': bench.backbone_weights}}},
              'c_pssl_class_weighted': {'model': {'pretrained': bench.pretrained['c_pssl_class_weighted']}},
              'c_pssl_pixel_weighted': {'model': {'pretrained': bench.pretrained['c_pssl_pixel_weighted']}}}
    without = bench.results.get('finetune') or {}
    keys = [k for k in starts if k in without]
    if not keys:
        raise PSSLError('extension mm_tuning: the main fine-tuning produced no results')
    log_dir = os.path.join(out, 'logs')

    jobs, tuned = {}, {}
    for key in keys:
        jobs[f'mm_tuning_{key}'], tuned[key] = bench._job(
            TUNE_CONFIG, _merge(base, starts[key]), os.path.join(out, 'mm_tuning', key), iters,
            cfg['seed'], per_step)
    run_jobs(jobs, cfg['workers'], log_dir)

    ft_iters = _scaled(cfg['finetune']['iters'], cfg['scale'])
    jobs, metrics = {}, {}
    for seed in cfg['seeds']:
        for key in keys:
            save_dir = os.path.join(out, 'mm_finetune', f'{key}_seed{seed}')
            jobs[f'mm_finetune_{key}_seed{seed}'], _ = bench._job(
                cfg['finetune']['config'], _merge(base, {'model': {'pretrained': tuned[key]}}),
                save_dir, ft_iters, seed, cfg['finetune']['batch_size'], evaluate=True)
            metrics[(key, seed)] = save_dir + '.metrics.json'
    run_jobs(jobs, cfg['workers'], log_dir)

    rows, details = [], {}
    for key in keys:
        with_mm = []
        for seed in cfg['seeds']:
            with open(metrics[(key, seed)]) as f:
                with_mm.append(json.load(f)['miou'])
        base_runs = {r['seed']: r['miou'] for r in without[key]['runs']}
        plain = [base_runs[s] for s in cfg['seeds']]
        gain = [w - p for w, p in zip(with_mm, plain)]  # paired by fine-tuning seed
        curve = _loss_curve(os.path.join(out, 'mm_tuning', key))
        rows.append([INITS[key], _pm(plain), _pm(with_mm), f'{np.mean(gain):+.3f} ± {np.std(gain):.3f}',
                     ', '.join(f'{v:.3f}' for v in with_mm),
                     f'{curve[0]:.3f} → {curve[-1]:.3f}' if curve else 'n/a'])
        details[key] = {'without': plain, 'with': with_mm, 'gain': gain, 'tuned': tuned[key],
                        'triplet_loss': curve}
    s = settings['sampler']
    note = (f"M&M tuning: {iters} iterations of {per_step} images (~{s['num_patches']} patches each, "
            f"side {s['min_size']}-{s['max_size']} px resized to {s['out_size']}, "
            f"{s['fg_ratio']:.0%} foreground, {s['oversample']}x oversampling, "
            f"≤{s['max_overlap']:.0%} overlap), triplet margin {settings['margin']}, SGD lr "
            f"{settings['learning_rate']} (x{settings['decay_factor']} at {settings['decay_at']:.0%}), "
            f"backbone only, run once per init at seed {cfg['seed']} ({TUNE_CONFIG}); then the same "
            f"fine-tuning as above ({ft_iters} iterations) per seed. Gain is paired by seed. "
            "Triplet loss: first and last logged window.")
    return {'title': f"Mix-and-Match tuning: target test mIoU (mean ± std over seeds {cfg['seeds']})",
            'header': ['initialisation', 'without M&M', 'with M&M', 'gain', 'with M&M per seed',
                       'triplet loss'],
            'rows': rows, 'note': note, 'details': details}
