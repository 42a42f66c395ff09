"""results.md, results.json and figure.png for a benchmark run."""
import json
import os

import cv2
import numpy as np

from ..utils.io import atomic_write, atomic_write_text
from .common import INITS, source_id
from .stats import fmt_difference, slope_interval


def row_labels(results):
    """{row key: its label} of the run's table, in config order."""
    rows = results['config'].get('inits')
    return {r['key']: r['label'] for r in rows} if rows else dict(INITS)


def _label_miou(results, key):
    for row in results['config'].get('inits', []):
        if row['key'] == key and row.get('labels'):
            src = results.get('label_sources', {}).get(source_id(row))
            return src['miou'] if src else None
    return None


def _finetune_lines(results, ft, title):
    base = results['config'].get('baseline', 'b_classifier_backbone')
    labels = row_labels(results)
    lines = [title, '', f'| initialisation | label mIoU | target mIoU, mean ± std | paired to {labels.get(base, base)}: '
                        'mean ± std [95 % interval] | per seed |', '|---|---|---|---|---|']
    for key, label in labels.items():
        if key not in ft:
            continue
        r = ft[key]
        per = ', '.join(f"{x['miou']:.3f}" for x in r['runs'])
        lm = _label_miou(results, key)
        paired = fmt_difference(r['paired']) + (' **resolved**' if r['paired']['resolved'] else '') \
            if 'paired' in r else '(baseline)'
        lines.append(f"| {label} | {'-' if lm is None else f'{lm:.3f}'} | {r['miou_mean']:.3f} ± "
                     f"{r['miou_std']:.3f} | {paired} | {per} |")
    return lines


def verdict(results):
    """One sentence: does PSSL (the first row pre-trained on the generator's
    own labels) beat the baseline, and what share of the ceiling's headroom
    over the baseline it reaches."""
    ft, cfg = results.get('finetune', {}), results['config']
    pssl = next((r['key'] for r in cfg.get('inits', []) if r.get('labels')
                 and r['labels'].get('kind', 'generated') == 'generated' and not r['labels'].get('overrides')
                 and not r['labels'].get('config') and not r.get('use_confidence')
                 and not r.get('label_space')), None)
    if pssl not in ft or 'paired' not in ft[pssl]:
        return ''
    labels = row_labels(results)
    d = ft[pssl]['paired']
    name, base = labels[pssl].split(' ')[0], labels[cfg['baseline']].split(' ')[0]
    if d['resolved'] and d['mean'] > 0:
        said = f'{name} beats {base}: {name} − {base} = {fmt_difference(d)}, the 95 % interval above 0'
    elif d['resolved']:
        said = f'{name} is worse than {base}: {name} − {base} = {fmt_difference(d)}'
    else:
        said = f'{name} does not resolvably beat {base}: {name} − {base} = {fmt_difference(d)}, the 95 % interval holds 0'
    ceiling = cfg.get('ceiling')
    if ceiling in ft and 'paired' in ft[ceiling]:
        h = ft[ceiling]['paired']
        cname = labels[ceiling].split(' ')[0]
        share = f'{d["mean"] / h["mean"]:.0%}' if h['mean'] > 0 else 'no share (the ceiling is not above the baseline)'
        said += (f'; it reaches {share} of {cname}\'s headroom over {base} ({cname} − {base} = {fmt_difference(h)}'
                 + (')' if h['resolved'] else ', itself not resolved)'))
    return said + f", over {d['n']} paired seeds."


def _pair_lines(results):
    """The table of differences between rows (``pairs``), paired by seed."""
    pairs = results.get('pairs') or []
    if not pairs:
        return []
    labels = row_labels(results)
    tag = lambda key: labels.get(key, key).split(' ')[0]  # noqa: E731
    lines = ['', '## Differences between rows, paired by seed', '',
             '| pair | mean ± std [95 % interval] | |', '|---|---|---|']
    for d in pairs:
        x, y = d['rows']
        lines.append(f"| {tag(x)} − {tag(y)} | {fmt_difference(d)} | "
                     f"{'**resolved**' if d['resolved'] else 'not resolved'} |")
    return lines


def dose_response(results):
    """[(row key, label mIoU, paired difference)] of the pre-trained rows, and
    the slope of target gain against label mIoU (None under 3 sources)."""
    ft = results.get('finetune', {})
    own_space = {r['key'] for r in results['config'].get('inits', []) if not r.get('label_space')}
    points = [(k, _label_miou(results, k), ft[k]['paired']) for k in row_labels(results)
              if k in ft and 'paired' in ft[k] and _label_miou(results, k) is not None and k in own_space]
    if len({round(p[1], 6) for p in points}) < 3:
        return points, None
    return points, slope_interval([p[1] for p in points], [p[2]['mean'] for p in points])


def _md(results):
    lines = ['# PSSL controlled benchmark', '']
    ft = results.get('finetune', {})
    seeds = results['config']['seeds']
    lines += _finetune_lines(results, ft, f'## Target test mIoU over seeds {seeds}, paired by seed')
    if verdict(results):
        lines += ['', verdict(results)]
    lines += _pair_lines(results)
    points, slope = dose_response(results)
    if slope:
        lines += ['', f"Dose-response over {slope['n']} label sources: target gain over the baseline = "
                      f"{slope['intercept']:+.3f} + {slope['slope']:.3f} x label mIoU; per 0.1 label mIoU "
                      f"{slope['slope'] / 10:+.4f} [{slope['low'] / 10:+.4f}, {slope['high'] / 10:+.4f}] "
                      f"(95 %, r = {slope['r']:.2f})."]
    for n, table in sorted((results.get('label_efficiency') or {}).items(), key=lambda kv: int(kv[0])):
        lines += [''] + _finetune_lines(results, table, f'## Label efficiency: {n} labelled target images')
    srcs = results.get('label_sources') or {}
    if srcs:
        lines += ['', '## Label sources (pre-training stores) against the exact masks', '',
                  '| source | mIoU | foreground IoU | degradation strength |', '|---|---|---|---|']
        lines += [f"| {k} | {v['miou']:.3f} | {v['fg_iou']:.3f} | {v.get('strength', '-')} |"
                  for k, v in srcs.items()]
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
        stage_cpu = results.get('stage_cpu_s') or {}
        lines += ['', f"## Time per stage ({results['config'].get('workers', 2)} processes at once)", '',
                  '| stage | wall s | CPU s (its jobs + this process) |', '|---|---|---|']
        for k, v in results['timings_s'].items():
            c = stage_cpu.get(k)
            cpu = '-' if c is None else f"{c['cpu_s']:.0f}" + (
                f" ({c['unrecorded']} jobs reused without a record)" if c.get('unrecorded') else '')
            if k == 'total':
                cpu = f"{sum(x['cpu_s'] for x in stage_cpu.values()):.0f}"
            lines.append(f'| {k} | {v} | {cpu} |')
    cpu = results.get('job_cpu_s') or {}
    if cpu:
        groups = {}
        for job, value in cpu.items():
            kind = job.split('_', 1)[0]   # classifier, labels, pretrain, finetune, or an extension's
            count, total, unknown = groups.get(kind, (0, 0.0, 0))
            groups[kind] = (count + 1, total + (value or 0.0), unknown + (value is None))
        lines += ['', '## CPU seconds of the jobs (their own processes, whatever else ran)', '',
                  '| jobs | count | CPU s | per job |', '|---|---|---|---|']
        lines += [f'| {k} | {n} | {t:.0f}' + (f' ({u} reused without a record)' if u else '') +
                  f' | {t / (n - u):.0f} |' if n > u else f'| {k} | {n} | reused without a record | - |'
                  for k, (n, t, u) in groups.items()]
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
    labels = row_labels(results)
    keys = [k for k in labels if k in ft]
    ax = fig.add_subplot(grid[rows, :half - 1] if half > 1 else grid[rows, 0])
    colors = ['#999999', '#6699cc', '#cc6633', '#dd9944', '#669966', '#aa66aa']
    ax.bar(range(len(keys)), [ft[k]['miou_mean'] for k in keys], yerr=[ft[k]['miou_std'] for k in keys],
           color=[colors[i % len(colors)] for i in range(len(keys))], capsize=3)
    ax.set_xticks(range(len(keys)), [labels[k].split(' ')[0] for k in keys])
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


def _short(label):
    """A point's caption: a lettered row's tag ('(e) floor'), else what follows
    'PSSL: ' ('CAM alone ...'), at most 28 characters."""
    head, _, tail = label.partition(': ')
    return (head if head.startswith('(') or not tail else tail)[:28]


def _dose_figure(results, path):
    """Target gain over the baseline (paired mean, 95 % interval) against
    label mIoU, one point per pre-trained row, with the fitted line."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    points, slope = dose_response(results)
    labels = row_labels(results)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, x, d in points:
        err = [[d['mean'] - d['low']], [d['high'] - d['mean']]] if d['low'] is not None else None
        ax.errorbar([x], [d['mean']], yerr=err, fmt='o', capsize=3)
    xs = np.linspace(min(p[1] for p in points), max(p[1] for p in points), 20)
    ax.plot(xs, slope['intercept'] + slope['slope'] * xs, 'k--', linewidth=1,
            label=f"slope {slope['slope']:.3f} [{slope['low']:.3f}, {slope['high']:.3f}]")
    ax.axhline(0, color='grey', linewidth=0.8)
    ax.set_xlabel('pre-training label mIoU (against the exact masks)')
    ax.set_ylabel(f"target mIoU − {labels[results['config']['baseline']].split(' ')[0]} (paired)")
    ax.legend(fontsize=8, loc='upper left')
    fig.tight_layout()
    place_labels(ax, [(x, d['mean'], _short(labels[key])) for key, x, d in points],
                 [(x, d['low'], d['high']) for _, x, d in points if d['low'] is not None])
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format='png'), suffix='.png')
    plt.close(fig)


# Offsets (points) tried in turn for a label beside its point: right, left,
# above, below, then further out (a thin line leads back to the point).
_OFFSETS = [(dx * r, dy * r) for r in (1, 2, 3, 4, 5, 6, 8, 10) for dx, dy in
            ((5, 0), (-5, 0), (5, 5), (-5, 5), (5, -5), (-5, -5), (0, 8), (0, -8))]


def place_labels(ax, items, bars=(), fontsize=6):
    """Annotate ``items`` ([(x, y, text)]) so that no label overlaps another,
    a point or the axes' edge, and, where there is room, an error bar
    (``bars``: [(x, low, high)] in data units): each label takes the nearest
    ring of :data:`_OFFSETS` with a box free of labels and points, and in it
    the offset that crosses the fewest bars, with a line to its point.
    Returns the annotations."""
    import matplotlib.text
    renderer = ax.figure.canvas.get_renderer()
    taken = []     # label and point boxes: never overlapped
    for x, y, _ in items:
        px, py = ax.transData.transform((x, y))
        taken.append((px - 4, py - 4, px + 4, py + 4))
    soft = []      # error bars: avoided where there is room
    for x, low, high in bars:
        (px, p0), (_, p1) = ax.transData.transform((x, low)), ax.transData.transform((x, high))
        soft.append((px - 2, min(p0, p1), px + 2, max(p0, p1)))
    frame = ax.get_window_extent(renderer)
    made = []

    def hits(box, boxes):
        return sum(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes)

    def box_of(x, y, text, dx, dy):
        note = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords='offset points', fontsize=fontsize,
                           ha='left' if dx > 0 else 'right' if dx < 0 else 'center', va='center',
                           arrowprops=dict(arrowstyle='-', lw=0.4, color='grey', shrinkA=0, shrinkB=3))
        note.update_positions(renderer)
        ext = matplotlib.text.Text.get_window_extent(note, renderer)   # the text, not its line
        return note, (ext.x0, ext.y0, ext.x1, ext.y1)

    for x, y, text in sorted(items, key=lambda item: (item[0], item[1])):
        scored = []
        for rank, (dx, dy) in enumerate(_OFFSETS):
            note, box = box_of(x, y, text, dx, dy)
            note.remove()
            inside = box[0] >= frame.x0 and box[2] <= frame.x1 and box[1] >= frame.y0 and box[3] <= frame.y1
            scored.append(((not inside, hits(box, taken), rank // 8, hits(box, soft), rank), dx, dy))
        _, dx, dy = min(scored)
        note, box = box_of(x, y, text, dx, dy)
        taken.append(box)
        made.append(note)
    return made


def write_report(results, examples, out_dir):
    """<report_name>.json/.md and its figure (results: figure.png), plus
    <report_name>_dose_response.png when three or more label sources were
    pre-trained on."""
    name = results['config'].get('report_name', 'results')
    atomic_write_text(os.path.join(out_dir, f'{name}.json'), json.dumps(results, indent=1, default=str))
    atomic_write_text(os.path.join(out_dir, f'{name}.md'), _md(results))
    _figure(results, examples, os.path.join(out_dir, 'figure.png' if name == 'results' else f'{name}.png'))
    if dose_response(results)[1]:
        _dose_figure(results, os.path.join(out_dir, f'{name}_dose_response.png'))


def append_extension(out_dir, name, table):
    """Add one extension's table to a finished run's results.json/results.md."""
    path = os.path.join(out_dir, 'results.json')
    with open(path) as f:
        results = json.load(f)
    results.setdefault('extensions', {})[name] = table
    atomic_write_text(path, json.dumps(results, indent=1, default=str))
    atomic_write_text(os.path.join(out_dir, 'results.md'), _md(results))


def read_examples(path, image_root, explainers):
    """[(image path, {explainer: map}, label mask, exact mask)] of the label
    shard's saved examples (``<shard>.examples.npz``; [] when there is none)."""
    examples = []
    if not os.path.isfile(path):
        return examples
    saved = np.load(path)
    n = 0
    while f'{n}_maps' in saved:
        examples.append((os.path.join(image_root, str(saved[f'{n}_rel'])),
                         dict(zip(explainers, saved[f'{n}_maps'])), saved[f'{n}_mask'], saved[f'{n}_gt']))
        n += 1
    return examples
