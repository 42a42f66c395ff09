"""results.md, results.json and figure.png for a benchmark run."""
import json
import os

import cv2
import numpy as np

from ..utils.io import atomic_write, atomic_write_text


def _md(results):
    lines = ['# PSSL controlled benchmark', '']
    ft = results.get('finetune', {})
    from .run import INITS
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
        lines += ['', f"## Pseudo-label quality on the source set (threshold {pl['rule'][0]} "
                      f"x{pl['rule'][1]}), against the exact masks", '',
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
    expl = sorted(examples[0][1]) if examples else []
    cols = 1 + len(expl) + 3
    rows = len(examples) + 1
    fig = plt.figure(figsize=(2.0 * cols, 2.0 * rows + 1.5))
    for r, (item, maps, mask, gt) in enumerate(examples):
        image = cv2.cvtColor(cv2.imread(item.image_path), cv2.COLOR_BGR2RGB)
        panels = [('image', image)] + [(e, maps[e]) for e in expl] + [
            ('consensus', np.mean([maps[e] for e in expl], 0)), ('pseudo mask', mask), ('true mask', gt)]
        for c, (title, panel) in enumerate(panels):
            ax = fig.add_subplot(rows, cols, r * cols + c + 1)
            ax.imshow(panel, cmap=None if panel.ndim == 3 else 'jet' if 'mask' not in title else 'gray',
                      vmin=0, vmax=1 if panel.ndim == 2 else None)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
    from .run import INITS
    ft = results.get('finetune', {})
    ax = fig.add_subplot(rows, 2, (rows - 1) * 2 + 1)
    keys = [k for k in INITS if k in ft]
    ax.bar(range(len(keys)), [ft[k]['miou_mean'] for k in keys], yerr=[ft[k]['miou_std'] for k in keys],
           color=['#999999', '#6699cc', '#cc6633', '#dd9944'][:len(keys)])
    ax.set_xticks(range(len(keys)), [k.split('_')[0] + ')' for k in keys])
    ax.set_ylabel('target test mIoU'), ax.set_ylim(0, 1)
    pl = results.get('pseudo_labels', {}).get('by_group', {})
    ax = fig.add_subplot(rows, 2, (rows - 1) * 2 + 2)
    names = [k for k in pl if k.startswith(('explainer', 'classifier', 'ensemble'))]
    ax.barh(range(len(names)), [pl[k]['miou'] for k in names], color='#669966')
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel('pseudo-label mIoU'), ax.set_xlim(0, 1)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, format='png'), suffix='.png')
    plt.close(fig)


def write_report(results, examples, out_dir):
    atomic_write_text(os.path.join(out_dir, 'results.json'), json.dumps(results, indent=1, default=str))
    atomic_write_text(os.path.join(out_dir, 'results.md'), _md(results))
    _figure(results, examples, os.path.join(out_dir, 'figure.png'))
