"""Look at a label store before pre-training on it: a contact sheet of random
labels over their images, and the store's statistics.

The statistics never open every label file: they come from train.txt (labels
per class), the writer's per-image records ``stats/shard-*-of-*.jsonl``
(foreground share, mean confidence) and the manifest's skipped images. A store
without records (e.g. upstream's released ones) is measured on a seeded
sample of at most ``max_stats`` label files instead.

Outputs in ``out`` (default ``<pssl_root>/inspect/``): ``contact_sheet.png``,
``stats.png``, ``stats.json``; the summary goes to stdout.
"""
import json
import math
import os

import cv2
import numpy as np

from . import store
from .writer import STATS_DIR, iter_jsonl
from ..utils.errors import PSSLError
from ..utils.io import atomic_write, json_default, read_image_bgr
from ..utils.metrics_json import write_metrics_json

__all__ = ['inspect_store', 'inspect_main', 'image_root_of', 'sheet_size']

# Contact-sheet layout, in pixels (tests rebuild the sheet size from these).
TILE, GAP, MARGIN, CAPTION, HEADER, MIN_WIDTH = 160, 4, 10, 50, 46, 560
OVERLAY_BGR, CONTOUR_BGR = (255, 0, 255), (255, 255, 0)   # magenta fill, cyan outline: rare in photos
FONT, FONT_SCALE, LINE = cv2.FONT_HERSHEY_SIMPLEX, 0.42, 15
STATS_FIGSIZE, STATS_DPI = (15, 4.8), 100                   # stats.png is 1500 x 480
SHEET, STATS_PNG, STATS_JSON = 'contact_sheet.png', 'stats.png', 'stats.json'


def sheet_size(num, tiles):
    """(height, width) of a sheet of ``num`` cells of ``tiles`` tiles each."""
    cols = max(1, math.ceil(math.sqrt(num)))
    rows = max(1, math.ceil(num / cols))
    cell_w = tiles * TILE + (tiles - 1) * GAP
    width = max(MIN_WIDTH, MARGIN + cols * (cell_w + MARGIN))
    return HEADER + rows * (TILE + CAPTION + MARGIN), width


def read_manifest(pssl_root):
    path = os.path.join(pssl_root, store.MANIFEST)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise PSSLError(f'{path}: unreadable manifest ({e})'.splitlines()[0])


def image_root_of(manifest):
    """The source images' root the manifest records (relabel or generator run), or None."""
    manifest = manifest or {}
    for section, keys in (('relabel', ('image_root',)), ('config', ('source', 'image_root'))):
        value = manifest.get(section)
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value:
            return value
    return None


def read_class_names(path, synsets):
    """Display names by class id: either one name per line in class-id order,
    or ``<synset> <name>`` lines (ImageNet's LOC_synset_mapping.txt)."""
    if not os.path.isfile(path):
        raise PSSLError(f'{path}: --class_names file not found')
    with open(path, encoding='utf-8') as f:
        lines = [line.strip() for line in f if line.strip()]
    index = {n: i for i, n in enumerate(synsets)}
    if lines and all(line.split()[0] in index for line in lines):
        names = list(synsets)
        for line in lines:
            wnid, _, rest = line.partition(' ')
            names[index[wnid]] = f'{wnid} {rest.split(",")[0].strip()}'.strip()
        return names
    if len(lines) != len(synsets):
        raise PSSLError(f'{path}: --class_names has {len(lines)} names, the store has '
                        f'{len(synsets)} classes')
    return lines


def _quantiles(values):
    if not len(values):
        return None
    v = np.asarray(values, np.float64)
    q = np.quantile(v, [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1])
    keys = ('min', 'p05', 'p25', 'median', 'p75', 'p95', 'max')
    return {'mean': round(float(v.mean()), 4), **{k: round(float(x), 4) for k, x in zip(keys, q)}}


def _records(path):
    """(image, foreground, confidence) of each stats record, streamed."""
    for r in iter_jsonl(path):
        try:
            yield r['image'], float(r['foreground']), r.get('confidence')
        except (ValueError, KeyError, TypeError):
            continue


def per_image_stats(pssl_root, labels, index, max_stats, seed, bad_labels=None):
    """-> (foreground shares, mean confidences (NaN: none), source) of the
    labels with a writer record, else of a seeded sample of label files; a
    sampled file that fails the store's checks is added to ``bad_labels``
    (a dict path -> problem) instead of stopping the run."""
    fg = np.full(len(labels), np.nan, np.float32)
    conf = np.full(len(labels), np.nan, np.float32)
    stats_dir = os.path.join(pssl_root, STATS_DIR)
    names = sorted(os.listdir(stats_dir)) if os.path.isdir(stats_dir) else []
    for name in names:
        if name.startswith('shard-') and name.endswith('.jsonl') \
                and not name.endswith('.skipped.jsonl'):
            for image, f, c in _records(os.path.join(stats_dir, name)):
                i = index.get(store.label_relpath(image))
                if i is not None:   # records of labels no longer listed do not count
                    fg[i] = f
                    conf[i] = np.nan if c is None else c
    covered = ~np.isnan(fg)
    if covered.any():
        return fg[covered], conf[covered], 'stats_files'
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(labels), size=min(max_stats, len(labels)), replace=False)
    fg, conf = [], []
    for i in sorted(picks):
        try:
            mask, confidence = store.read_label(os.path.join(pssl_root, labels[i][0]))
        except PSSLError as e:
            if bad_labels is not None:
                bad_labels[labels[i][0]] = str(e)
            continue
        fg.append(mask.mean())
        conf.append(np.nan if confidence is None else confidence.mean())
    return np.asarray(fg, np.float32), np.asarray(conf, np.float32), 'sampled_label_files'


def store_stats(pssl_root, labels, index, class_names, manifest, fg, conf, source):
    counts = np.bincount([cid for _, cid, _ in labels], minlength=len(class_names))
    skipped = None
    if manifest is not None and 'skipped' in manifest:
        # an image skipped once and labelled by a later run is not skipped
        skipped = [s for s in manifest['skipped']
                   if store.label_relpath(str(s.get('image'))) not in index]
    conf = conf[~np.isnan(conf)]
    return {
        'pssl_root': os.path.abspath(pssl_root),
        'labels': len(labels), 'classes': len(class_names),
        'images_in_source': (manifest or {}).get('images_in_source'),
        'per_class': {class_names[i]: int(c) for i, c in enumerate(counts) if c},
        'labels_per_class': _quantiles(counts[counts > 0]),
        'classes_without_labels': [class_names[i] for i, c in enumerate(counts) if not c],
        'skipped': skipped,
        'per_image_source': source, 'per_image_count': len(fg),
        'foreground_share': _quantiles(fg),
        'empty_labels': int((fg == 0).sum()),
        'full_labels': int((fg >= 0.999).sum()),
        'mean_confidence': _quantiles(conf),
    }


def _fit(image, mask):
    """Image and mask scaled to fit a TILE x TILE square."""
    h, w = image.shape[:2]
    s = TILE / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return (cv2.resize(image, size, interpolation=cv2.INTER_AREA),
            cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST))


def _paste(canvas, tile, y, x):
    h, w = tile.shape[:2]
    oy, ox = y + TILE - h, x + (TILE - w) // 2    # on the caption: no gap above the text
    canvas[oy:oy + h, ox:ox + w] = tile


def _text(canvas, text, y, x, width, colour=(20, 20, 20)):
    """One line of ASCII text at baseline y, cut to ``width`` pixels."""
    text = text.encode('ascii', 'replace').decode()
    while text and cv2.getTextSize(text, FONT, FONT_SCALE, 1)[0][0] > width:
        text = text[:-2] + '~' if len(text) > 2 else ''
    cv2.putText(canvas, text, (x, y), FONT, FONT_SCALE, colour, 1, cv2.LINE_AA)


def _note_tile(canvas, y, x, lines):
    cv2.rectangle(canvas, (x, y), (x + TILE - 1, y + TILE - 1), (200, 200, 230), -1)
    for k, line in enumerate(lines):
        _text(canvas, line, y + 20 + k * LINE, x + 6, TILE - 12, (0, 0, 160))


def _cell(canvas, y, x, tiles, pssl_root, image_root, label, display, bad_labels):
    """Draw one label's tiles and caption; -> a problem string or None. A
    label file that fails the store's checks also goes to ``bad_labels``."""
    rel, class_id, _ = label
    caption = [display[class_id], os.path.basename(store.image_relpath(rel))]
    problem = None
    try:
        mask, confidence = store.read_label(os.path.join(pssl_root, rel))
        image_path = os.path.join(image_root, store.image_relpath(rel))
        try:
            image = read_image_bgr(image_path)
        except PSSLError:
            problem = f'{image_path}: image missing or unreadable'
            _note_tile(canvas, y, x, ['image missing', 'or unreadable'])
        note = ''
        if problem is None and image.shape[:2] != mask.shape:
            note = f' mask {mask.shape[1]}x{mask.shape[0]}!'
            problem = f'{rel}: mask {mask.shape[1]}x{mask.shape[0]} differs from image ' \
                      f'{image.shape[1]}x{image.shape[0]}'
            mask = cv2.resize(mask, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        line = f'fg {mask.mean():.0%}' + ('' if confidence is None else
                                          f'  conf {confidence.mean():.2f}') + note
        caption.append(line)
        if problem is None or note:
            small, m = _fit(image, mask)
            over = small.copy()
            over[m > 0] = (0.55 * small[m > 0] + 0.45 * np.array(OVERLAY_BGR)).astype(np.uint8)
            contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(over, contours, -1, CONTOUR_BGR, 1)
            _paste(canvas, over, y, x)
        if tiles == 2 and confidence is not None:
            if confidence.shape != mask.shape:
                confidence = cv2.resize(confidence, mask.shape[::-1], interpolation=cv2.INTER_NEAREST)
            heat = cv2.applyColorMap((np.clip(confidence, 0, 1) * 255).astype(np.uint8),
                                     cv2.COLORMAP_VIRIDIS)
            _paste(canvas, _fit(heat, mask)[0], y, x + TILE + GAP)
        elif tiles == 2:
            _note_tile(canvas, y, x + TILE + GAP, ['no confidence'])
    except PSSLError as e:
        problem = bad_labels[rel] = str(e)
        _note_tile(canvas, y, x, ['label unreadable'])
    cell_w = tiles * TILE + (tiles - 1) * GAP
    for k, line in enumerate(caption):
        _text(canvas, line, y + TILE + 14 + k * LINE, x, cell_w)
    return problem


def contact_sheet(pssl_root, image_root, labels, picks, display, seed, bad_labels=None):
    """-> (BGR sheet, [problem strings]) for the labels at ``picks``; bad
    label files are also added to the dict ``bad_labels``."""
    bad_labels = {} if bad_labels is None else bad_labels
    chosen = [labels[i] for i in picks]
    has_conf = False
    for rel, _, _ in chosen:
        try:
            has_conf = store.read_label(os.path.join(pssl_root, rel))[1] is not None
        except PSSLError:
            continue
        break
    tiles = 2 if has_conf else 1
    height, width = sheet_size(len(chosen), tiles)
    sheet = np.full((height, width, 3), 255, np.uint8)
    _text(sheet, f'{os.path.abspath(pssl_root)}: {len(chosen)} of {len(labels)} labels '
                 f'(seed {seed})', 18, MARGIN, width - 2 * MARGIN)
    legend = 'magenta = object, cyan = its outline' + \
        ('; right: confidence, dark = low, yellow = high' if has_conf else '')
    _text(sheet, legend, 18 + LINE + 2, MARGIN, width - 2 * MARGIN, (90, 90, 90))
    cols = max(1, math.ceil(math.sqrt(len(chosen))))
    cell_w = tiles * TILE + (tiles - 1) * GAP
    problems = []
    for k, label in enumerate(chosen):
        y = HEADER + (k // cols) * (TILE + CAPTION + MARGIN)
        x = MARGIN + (k % cols) * (cell_w + MARGIN)
        problem = _cell(sheet, y, x, tiles, pssl_root, image_root, label, display, bad_labels)
        if problem:
            problems.append(problem)
    return sheet, problems


def plot_stats(stats, fg, conf, display_by_name, path):
    """stats.png: foreground-share and confidence histograms, labels per class."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    conf = conf[~np.isnan(conf)]
    fig, axes = plt.subplots(1, 3, figsize=STATS_FIGSIZE, dpi=STATS_DPI)
    where = 'from stats files' if stats['per_image_source'] == 'stats_files' else 'sampled'
    bins = np.linspace(0, 1, 21)
    for ax, values, title in ((axes[0], fg, 'foreground share'), (axes[1], conf, 'mean confidence')):
        if len(values):
            ax.hist(values, bins=bins, color='tab:orange' if ax is axes[0] else 'tab:green')
            ax.set_title(f'{title} per label ({len(values)}, {where})', fontsize=10)
        else:
            ax.text(0.5, 0.5, f'no {title} in this store', ha='center', va='center')
            ax.set_title(title, fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylabel('labels')
    counts = sorted(stats['per_class'].items(), key=lambda kv: -kv[1])
    if len(counts) > 40:
        counts = counts[:20] + [('...', 0)] + counts[-20:]
    ax = axes[2]
    ax.bar(range(len(counts)), [c for _, c in counts], color='tab:blue')
    ax.set_xticks(range(len(counts)))
    ax.set_xticklabels([display_by_name.get(n, n)[:18] for n, _ in counts], rotation=90,
                       fontsize=8 if len(counts) <= 20 else 6)
    empty = len(stats['classes_without_labels'])
    shown = 'top/bottom 20 classes' if len(stats['per_class']) > 40 else 'per class'
    ax.set_title(f'labels {shown}; {empty} of {stats["classes"]} classes have none', fontsize=10)
    from matplotlib.ticker import MaxNLocator
    for ax in axes:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.subplots_adjust(left=0.05, right=0.99, top=0.93, bottom=0.27, wspace=0.25)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format='png', dpi=STATS_DPI), suffix='.png')
    plt.close(fig)


def _fmt(q):
    return 'n/a' if q is None else (f"mean {q['mean']:.3f}, median {q['median']:.3f}, "
                                    f"5-95% {q['p05']:.3f}-{q['p95']:.3f}")


def summary(stats, out):
    s = stats
    per_class = s['labels_per_class']
    lines = [f"{s['pssl_root']}: {s['labels']} labels, {len(s['per_class'])} of {s['classes']} "
             f"classes labelled" + ('' if per_class is None else
                                    f" ({per_class['min']:.0f}-{per_class['max']:.0f} per class)")]
    if s['classes_without_labels']:
        lines.append(f"classes without labels: {len(s['classes_without_labels'])} "
                     f"(e.g. {', '.join(s['classes_without_labels'][:3])})")
    lines.append('skipped images: ' + ('unknown (no manifest.json)' if s['skipped'] is None
                                       else str(len(s['skipped']))))
    lines.append(f"foreground share ({s['per_image_count']} labels, {s['per_image_source']}): "
                 f"{_fmt(s['foreground_share'])}; {s['empty_labels']} empty, {s['full_labels']} full")
    lines.append(f"mean confidence: {_fmt(s['mean_confidence'])}")
    if s.get('bad_labels'):
        lines.append(f"bad label files: {s['bad_labels']['count']} of those opened, "
                     f"first: {s['bad_labels']['first']}")
    if s['sheet_problems']:
        lines.append(f"contact sheet: {len(s['sheet_problems'])} problem(s), "
                     f"first: {s['sheet_problems'][0]}")
    lines.append(f'wrote {SHEET}, {STATS_PNG}, {STATS_JSON} in {out}')
    return '\n'.join(lines)


def inspect_store(pssl_root, image_root=None, num=16, seed=0, out=None, class_names=None,
                  max_stats=2000):
    """Write the contact sheet, stats.png and stats.json; -> the stats dict."""
    if not os.path.isdir(pssl_root):
        raise PSSLError(f'{pssl_root}: --pssl_root is not a directory')
    if num < 1 or max_stats < 1:
        raise PSSLError('--num and --max_stats must be at least 1')
    manifest = read_manifest(pssl_root)
    if image_root is None:
        image_root = image_root_of(manifest)
        if image_root is None:
            raise PSSLError(f'{pssl_root}: manifest.json does not record the source images; '
                            f'pass --image_root')
        if not os.path.isdir(image_root):
            raise PSSLError(f'{image_root}: the image root recorded in manifest.json is not a '
                            f'directory here; pass --image_root')
    elif not os.path.isdir(image_root):
        raise PSSLError(f'{image_root}: --image_root is not a directory')
    labels, synsets = store.list_labels(pssl_root)
    if not labels:
        raise PSSLError(f'{os.path.join(pssl_root, store.FILE_LIST)}: lists no labels')
    display = read_class_names(class_names, synsets) if class_names else list(synsets)
    out = out or os.path.join(pssl_root, 'inspect')

    picks = sorted(np.random.default_rng(seed).choice(len(labels), size=min(num, len(labels)),
                                                      replace=False))
    bad_labels = {}
    sheet, problems = contact_sheet(pssl_root, image_root, labels, picks, display, seed, bad_labels)
    if problems and len(problems) == len(picks) and all('image missing' in p for p in problems):
        raise PSSLError(f'{image_root}: none of the {len(picks)} sampled images is there '
                        f'(first: {problems[0].split(":")[0]}); is --image_root right?')
    index = {rel: i for i, (rel, _, _) in enumerate(labels)}
    fg, conf, source = per_image_stats(pssl_root, labels, index, max_stats, seed, bad_labels)
    stats = store_stats(pssl_root, labels, index, synsets, manifest, fg, conf, source)
    # counted, not fatal: the store's checks (store.read_label) on every file opened here
    stats.update(bad_labels={'count': len(bad_labels), 'first': next(iter(bad_labels.values()), None),
                             'files': sorted(bad_labels)},
                 image_root=os.path.abspath(image_root), seed=seed,
                 sheet_labels=[labels[i][0] for i in picks], sheet_problems=problems)
    os.makedirs(out, exist_ok=True)
    ok = [False]

    def _write_sheet(tmp):
        ok[0] = cv2.imwrite(tmp, sheet)
    atomic_write(os.path.join(out, SHEET), _write_sheet, suffix='.png')
    if not ok[0]:
        raise PSSLError(f'{out}: cannot write {SHEET}')
    plot_stats(stats, fg, conf, dict(zip(synsets, display)), os.path.join(out, STATS_PNG))
    write_metrics_json(os.path.join(out, STATS_JSON),
                       json.loads(json.dumps(stats, default=json_default)))
    print(summary(stats, out))
    return stats


def inspect_main(argv=None):
    """tools/inspect_pssl.py"""
    from ..utils.cli import ArgumentParser
    p = ArgumentParser('Look at a PSSL label store: a contact sheet of random labels over '
                       'their images, and its statistics (stats.png, stats.json).')
    p.add_argument('--pssl_root', required=True, help='the label store')
    p.add_argument('--image_root', default=None,
                   help='the source images (<root>/train/<class>/*); default: the root '
                        'recorded in the store\'s manifest.json')
    p.add_argument('--num', type=int, default=16, help='labels on the contact sheet')
    p.add_argument('--seed', type=int, default=0, help='picks the labels; same seed, same labels')
    p.add_argument('--out', default=None, help='output folder (default: <pssl_root>/inspect)')
    p.add_argument('--class_names', default=None,
                   help='display names: one per line in class-id order, or "<synset> <name>" lines')
    p.add_argument('--max_stats', type=int, default=2000,
                   help='without stats/*.jsonl records: label files sampled for the statistics')
    args = p.parse_args(argv)
    return inspect_store(args.pssl_root, args.image_root, args.num, args.seed, args.out,
                         args.class_names, args.max_stats)
