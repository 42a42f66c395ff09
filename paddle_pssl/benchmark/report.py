"""results.md, results.json and figure.png for a benchmark run."""
import json
import os

import cv2
import numpy as np

from ..utils.io import atomic_write, atomic_write_text
from .common import INITS


def _md(results):
    lines = ['# PSSL controlled benchmark', '']
    ft = results.get('finetune', {})
    seeds = results['config']['seeds']
    lines += [f'## Target test mIoU (mean ± std over seeds {seeds})', '',
              '| initialisation | mIoU | per seed |', '|---|---|---|']
    for key, label in INITS.items():
        if key in ft:
            r = ft[key]
            per = ', '.join(f"{x['miou']:.3f}" for x in r['runs'])
            lines.append(f"| {label} | {r['miou_mean']:.3f} ± {r['miou_std']:.3f} | {per} |")
    pl = results.get('pseudo_labels', {})
    if pl:
        cut = pl['rule'][0] + (f" x{pl['rule'][1]}" if pl['rule'][0] == 'mean' else '')
        lines += ['', f"## Pseudo-label quality on the source set ({pl.get('method', 'mean')} consensus, "
                      f"cut {cut}), against the exact masks", '',
                  '| maps | mIoU | foreground IoU |', '|---|---|---|']
        groups = pl['by_group']
        order = sorted(groups, key=lambda k: (k.startswith('ensemble'), k.startswith('classifier'),
                                              k.startswith('explainer'), k))
        for key in order:
            lines.append(f"| {key} | {groups[key]['miou']:.3f} | {groups[key]['fg_iou']:.3f} |")
        lines.append(f"| label store (tools/eval_pseudo_labels) | {pl['store']['miou']:.3f} | "
                     f"{pl['store']['fg_iou']:.3f} |")
        lines.append(f"| chance (random mask, true foreground share) | {pl['chance']['miou']:.3f} | "
                     f"{pl['chance']['fg_iou']:.3f} |")
    for name, table in results.get('extensions', {}).items():
        lines += ['', f"## {table.get('title', name)}", '',
                  '| ' + ' | '.join(table['header']) + ' |', '|' + '---|' * len(table['header'])]
        for row in table['rows']:
            lines.append('| ' + ' | '.join(f'{v:.3f}' if isinstance(v, float) else str(v) for v in row) + ' |')
        if table.get('note'):
            lines += ['', table['note']]
    if results.get('classifiers'):
        lines += ['', '## Classifiers (source set)', '', '| classifier | train acc | val acc |', '|---|---|---|']
        for c in results['classifiers']:
            fmt = lambda v: '-' if v is None else f'{v:.3f}'  # noqa: E731
            lines.append(f"| {c['label']} ({c['name']}) | {fmt(c.get('train_accuracy'))} | "
                         f"{fmt(c.get('val_accuracy'))} |")
    if results.get('timings_s'):
        lines += ['', '## Time (s, 2 CPU cores)', '', '| step | s |', '|---|---|']
        lines += [f'| {k} | {v} |' for k, v in results['timings_s'].items()]
    return '\n'.join(lines) + '\n'


def _figure(results, examples, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec

    explainers = sorted(examples[0][1]) if examples else []
    cols = max(1 + len(explainers) + 3, 4)
    rows = len(examples)
    fig = plt.figure(figsize=(1.6 * cols, 1.7 * rows + 3.4))
    grid = GridSpec(rows + 1, cols, figure=fig, height_ratios=[1] * rows + [2.2],
                    hspace=0.35, wspace=0.08, left=0.03, right=0.99, top=0.95, bottom=0.08)
    for r, (image_path, maps, mask, gt) in enumerate(examples):
        image = cv2.cvtColor(cv2.imread(image_path), cv2.COLOR_BGR2RGB)
        panels = [('image', image)] + [(e, maps[e]) for e in explainers] + [
            ('consensus', np.mean([maps[e] for e in explainers], 0)), ('pseudo mask', mask),
            ('true mask', gt)]
        for c, (title, panel) in enumerate(panels):
            ax = fig.add_subplot(grid[r, c])
            if panel.ndim == 3:
                ax.imshow(panel)
            else:
                ax.imshow(panel, cmap='gray' if 'mask' in title else 'jet', vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
    half = cols // 2
    ft = results.get('finetune', {})
    keys = [k for k in INITS if k in ft]
    ax = fig.add_subplot(grid[rows, :half - 1] if half > 1 else grid[rows, 0])
    ax.bar(range(len(keys)), [ft[k]['miou_mean'] for k in keys], yerr=[ft[k]['miou_std'] for k in keys],
           color=['#999999', '#6699cc', '#cc6633', '#dd9944'][:len(keys)], capsize=3)
    ax.set_xticks(range(len(keys)), [INITS[k].split(' ')[0] for k in keys])
    ax.set_ylabel('target test mIoU'), ax.set_ylim(0, 1)
    ax.set_title('fine-tuning (mean ± std over seeds)', fontsize=9)
    pl = results.get('pseudo_labels', {}).get('by_group', {})
    names = [k for k in pl if k.startswith(('explainer', 'classifier', 'ensemble'))]
    ax = fig.add_subplot(grid[rows, half + 1:])
    ax.barh(range(len(names)), [pl[k]['miou'] for k in names], color='#669966')
    chance = results.get('pseudo_labels', {}).get('chance', {}).get('miou')
    if chance is not None:
        ax.axvline(chance, color='k', linestyle='--', linewidth=1, label='chance')
        ax.legend(fontsize=7, loc='lower right')
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel('pseudo-label mIoU on the source set'), ax.set_xlim(0, 1)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format='png'), suffix='.png')
    plt.close(fig)


def write_report(results, examples, out_dir):
    atomic_write_text(os.path.join(out_dir, 'results.json'), json.dumps(results, indent=1, default=str))
    atomic_write_text(os.path.join(out_dir, 'results.md'), _md(results))
    _figure(results, examples, os.path.join(out_dir, 'figure.png'))


def append_extension(out_dir, name, table):
    """Add one extension's table to a finished run's results.json/results.md."""
    path = os.path.join(out_dir, 'results.json')
    with open(path) as f:
        results = json.load(f)
    results.setdefault('extensions', {})[name] = table
    atomic_write_text(path, json.dumps(results, indent=1, default=str))
    atomic_write_text(os.path.join(out_dir, 'results.md'), _md(results))
