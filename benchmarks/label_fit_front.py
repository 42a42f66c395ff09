"""Labels that follow the object: foreground share, foreground IoU, label mIoU
and CPU seconds per image of candidate generator settings, on the real masked
photos and on the benchmark's source set, in one command.

    python benchmarks/label_fit_front.py --work output/label_fit --png docs/quality_cost_front.png
    python benchmarks/label_fit_front.py --work output/label_fit --run output/benchmark   # a finished benchmark's set

Sets (every image with an exact mask):
  real       the real masked photos (paddle_pssl.datasets.real_photos),
             EfficientNet-Lite0/1/2 at 224 with their ImageNet weights;
  benchmark  the benchmark's source set and its two classifiers: those of
             --run, else made into <work>/benchmark the way
             tools/benchmark_pssl.py makes them (its default data and
             classifier configs, seed 0).

A candidate is a set of maps per classifier (MAPS) and a cut (CUTS); every
pair is scored. Each map setting runs once per classifier through the
generator's own ``explain`` (inference engine), timed in CPU seconds of this
process after a warm-up image, and is cached in <work>/<set>/maps/. The cut
runs through the generator's own ``_label`` (consensus, per-classifier vote,
PMM), timed the same way. A candidate's cost is the sum of its maps' seconds
and its cut's; image decoding and writing are left out (the same for all).

Columns: share = mean foreground share of the labels (truth in the header),
|d share| = mean over images of |label share - true share|, fg IoU pooled
over the set (intersection sum / union sum), mean per-image fg IoU, label
mIoU (object class and background, as tools/eval_pseudo_labels.py), CPU s
per image. "default" in the tables is the generator's previous default
(configs/pseudo_labels/cam_smoothgrad.yml: CAM + SmoothGrad 4, loo + Otsu),
the goals are stated against: |mean share - truth| <= 0.05,
fg IoU >= +0.05, cost <= 2x. The generator's default now is the row
"CAM x0.5-1.5 mirrored | PMM, bias 0.2".
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402,F401  (zlib before paddle)
import numpy as np  # noqa: E402

from benchmarks.quality_cost_front import _images, explain_all  # noqa: E402
from paddle_pssl.pseudo_labels.evaluate import IoUCounter, gt_path, read_gt_mask  # noqa: E402

MS = [0.5, 1.0, 1.5, 2.0]   # the usual test-time scales of weakly supervised segmentation code
UP = [1.0, 1.5, 2.0]        # the same without the coarser grid of 0.5
MS3 = [0.5, 1.0, 1.5]       # without the costliest scale, 2
LO = [0.5, 1.0]
# map setting -> (explainer, options); 'gc*' only for classifiers without an exact CAM
SETTINGS = {
    'cam': ('cam', {}),
    'cam_flip': ('cam', {'flip': True}),
    'cam_up': ('cam', {'scales': UP, 'flip': True}),
    'cam_ms': ('cam', {'scales': MS, 'flip': True}),
    'cam_ms3': ('cam', {'scales': MS3, 'flip': True}),
    'cam_lo': ('cam', {'scales': LO, 'flip': True}),
    'sg4': ('smoothgrad', {'n_samples': 4}),
    'gc': ('gradcam', {}),
    'gc_ms': ('gradcam', {'scales': MS, 'flip': True}),
    'gc_up': ('gradcam', {'scales': UP, 'flip': True}),
    'gc_ms3': ('gradcam', {'scales': MS3, 'flip': True}),
    'gc_lo': ('gradcam', {'scales': LO, 'flip': True}),
}
# maps per classifier -> the settings averaged (those a classifier has)
MAPS = {
    'CAM + SG4': ['cam', 'sg4'],
    'CAM flip + SG4': ['cam_flip', 'sg4'],
    'CAM ms flip + SG4': ['cam_ms', 'sg4'],
    'CAM up flip + SG4': ['cam_up', 'sg4'],
    'CAM ms3 flip + SG4': ['cam_ms3', 'sg4'],
    'CAM lo flip + SG4': ['cam_lo', 'sg4'],
    'CAM': ['cam', 'gc'],
    'CAM ms flip': ['cam_ms', 'gc_ms'],
    'CAM up flip': ['cam_up', 'gc_up'],
    'CAM ms3 flip': ['cam_ms3', 'gc_ms3'],
    'CAM lo flip': ['cam_lo', 'gc_lo'],
    'CAM ms flip + SG4 + GC ms where no CAM': ['cam_ms', 'sg4', 'gc_ms'],
}
LOO_OTSU = {'method': 'loo', 'threshold': 'otsu'}
# cut -> the generator's consensus block
CUTS = {
    'loo, otsu': LOO_OTSU,
    'loo, otsu, bias 0.1': dict(LOO_OTSU, cut_bias=0.1),
    'loo, otsu, bias 0.2': dict(LOO_OTSU, cut_bias=0.2),
    'loo, otsu, bias 0.3': dict(LOO_OTSU, cut_bias=0.3),
    'loo, otsu, bias 0.4': dict(LOO_OTSU, cut_bias=0.4),
    'per classifier, quorum 0.5': dict(LOO_OTSU, per_classifier=True, quorum=0.5),
    'per classifier, quorum 1': dict(LOO_OTSU, per_classifier=True, quorum=1.0),
    'per classifier, bias 0.1, quorum 1': dict(LOO_OTSU, per_classifier=True, quorum=1.0, cut_bias=0.1),
    'per classifier, bias 0.2, quorum 0.5': dict(LOO_OTSU, per_classifier=True, quorum=0.5, cut_bias=0.2),
    'PMM on loo, otsu': dict(LOO_OTSU, postprocess='pmm'),
    'PMM on loo, otsu, bias 0.1': dict(LOO_OTSU, postprocess='pmm', cut_bias=0.1),
    'PMM on loo, otsu, bias 0.2': dict(LOO_OTSU, postprocess='pmm', cut_bias=0.2),
}
DEFAULT = ('CAM + SG4', 'loo, otsu')
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs',
                              'pseudo_labels', 'imagenet_efficientnet_lite.yml')
REAL_CLASSIFIERS = [{'name': 'efficientnet_lite0', 'input_size': 224},
                    {'name': 'efficientnet_lite1', 'input_size': 224},
                    {'name': 'efficientnet_lite2', 'input_size': 224}]


# ------------------------------------------------------------------ sets
def real_set(work, engine):
    from paddle_pssl.datasets.real_photos import make_real_masked_set
    data = make_real_masked_set(os.path.join(work, 'set'))
    cfg = {'seed': 0, 'source': {'image_root': data['image_root'], 'synsets': data['synsets']},
           'classifiers': REAL_CLASSIFIERS, 'explainers_engine': engine,
           'output': {'pssl_root': os.path.join(work, 'store'), 'vdl_every': 0}}
    return cfg, data['gt_root']


def prepare_benchmark(out):
    """The benchmark's source set and its two trained classifiers, made by the
    benchmark's own steps (default config, seed 0) into ``out``; -> the
    generator config the benchmark would label them with."""
    from paddle_pssl.benchmark.common import config_path, write_yaml
    from paddle_pssl.benchmark.run import Benchmark
    from paddle_pssl.config import load_yaml, merge_dicts
    path = os.path.join(out, 'configs', 'pseudo_labels.yml')
    if os.path.isfile(path):
        return path
    bench = Benchmark({'inits': [{'key': 'b', 'label': 'b', 'init': 'backbone'}], 'baseline': 'b',
                       'ceiling': None}, out)
    bench.make_data()
    bench.train_classifiers()
    cfg = merge_dicts(load_yaml(config_path(bench.cfg['pseudo_labels'])), {
        'seed': bench.cfg['seed'], 'output': {'pssl_root': os.path.join(out, 'labels')},
        'source': {'image_root': bench.source['image_root'], 'synsets': bench.source['synsets']}})
    cfg['classifiers'] = [{k: c[k] for k in ('name', 'label', 'weights', 'num_classes', 'input_size',
                                             'output_stride')} for c in bench.classifiers]
    return write_yaml(path, cfg)


def benchmark_set(run, engine):
    from paddle_pssl.config import load_yaml
    cfg = load_yaml(os.path.join(run, 'configs', 'pseudo_labels.yml'))
    cfg['explainers_engine'] = engine
    cfg['output'] = dict(cfg.get('output') or {}, vdl_every=0)
    return cfg, os.path.join(run, 'data', 'source', 'gt')


# ------------------------------------------------------------ the maps
def cached_maps(cfg, items, folder, batch):
    """{'<classifier>/<setting>': [maps]}, {same: CPU s per image}; each
    (classifier, setting) explained once and kept in ``folder`` with what
    made it (classifier entry, setting, images), which a later run must match."""
    os.makedirs(folder, exist_ok=True)
    maps, seconds = {}, {}
    for entry in cfg['classifiers']:
        label = entry.get('label', entry['name'])
        for setting, spec in SETTINGS.items():
            key = f'{label}/{setting}'
            if setting.startswith('gc') and f'{label}/cam' in maps:
                continue   # Grad-CAM only where there is no exact CAM (on GAP + linear it is CAM)
            path = os.path.join(folder, f"{key.replace('/', '__')}.npz")
            made_by = json.dumps({'classifier': entry, 'setting': spec, 'seed': cfg['seed'],
                                  'images': [it.rel for it in items]}, sort_keys=True)
            if not os.path.isfile(path):
                got, secs = explain_all(dict(cfg, classifiers=[entry]), items, batch, {setting: spec})
                if key not in got:
                    np.savez(path, skipped=True, made_by=made_by)
                    continue
                np.savez_compressed(path, seconds=secs[key], made_by=made_by,
                                    **{str(i): m for i, m in enumerate(got[key])})
            z = np.load(path)
            if str(z['made_by']) != made_by:
                raise SystemExit(f'{path}: made by other settings, classifiers or images: remove it')
            if 'skipped' in z.files:
                continue
            maps[key] = [z[str(i)] for i in range(len(items))]
            seconds[key] = float(z['seconds'])
    return maps, seconds


def class_ranks(cfg, items):
    """Rank of each image's own class in the classifiers' mean probability
    on the whole image, as the generator feeds it (1 = the top class)."""
    import paddle
    from paddle_pssl.explainers.base import softmax
    from paddle_pssl.pseudo_labels.generate import _to_input, load_classifiers
    images = _images(items)
    probs = 0.0
    for _, clf in load_classifiers(cfg['classifiers']):
        clf.model.eval()
        with paddle.no_grad():
            probs = probs + softmax(clf.model(paddle.to_tensor(_to_input(images, clf))).numpy())
    return {it.rel: int((p > p[it.class_id]).sum()) + 1 for it, p in zip(items, probs)}


# ------------------------------------------------------------- scoring
def score_set(name, cfg, gt_root, items, maps, seconds):
    from paddle_pssl.pseudo_labels.generate import PseudoLabelGenerator
    images = _images(items)
    gts = [read_gt_mask(gt_path(gt_root, it.rel), im.shape[:2]) for it, im in zip(items, images)]
    true_share = float(np.mean([g.mean() for g in gts]))
    rows, seen = [], set()
    for maps_name, settings in MAPS.items():
        members = sorted(k for k in maps if k.split('/')[-1] in settings)
        if not members or tuple(members) in seen:
            continue   # e.g. the Grad-CAM variants where every classifier has an exact CAM
        seen.add(tuple(members))
        for cut, consensus in CUTS.items():
            gen = PseudoLabelGenerator(dict(cfg, consensus=consensus), '<label_fit>')
            counter, shares, d_share, ious = IoUCounter(), [], [], []
            start = time.process_time()
            masks = [gen._label(it, None, im.shape[:2], im, {k: maps[k][i] for k in members}, 1, None).mask
                     for i, (it, im) in enumerate(zip(items, images))]
            cut_s = (time.process_time() - start) / len(items)
            for mask, gt, it in zip(masks, gts, items):
                counter.add(mask, gt, it.class_id)
                shares.append(float(mask.mean()))
                d_share.append(abs(float(mask.mean()) - float(gt.mean())))
                union = np.logical_or(mask, gt).sum()
                ious.append(float(np.logical_and(mask, gt).sum() / union) if union else 1.0)
            result = counter.result()
            rows.append({'maps': maps_name, 'cut': cut, 'members': members,
                         'explain_s': float(sum(seconds[k] for k in members)), 'cut_s': cut_s,
                         'cpu_s': float(sum(seconds[k] for k in members)) + cut_s,
                         'share': float(np.mean(shares)), 'abs_d_share': float(np.mean(d_share)),
                         'fg_iou': result['fg_iou'], 'mean_fg_iou': float(np.mean(ious)),
                         'miou': result['miou'], 'per_image': {
                             it.rel: {'share': s, 'fg_iou': u} for it, s, u in zip(items, shares, ious)}})
            print(f"{name}: {maps_name} | {cut}: share {rows[-1]['share']:.3f}, fg IoU {result['fg_iou']:.3f}, "
                  f"mIoU {result['miou']:.3f}, {rows[-1]['cpu_s']:.2f} CPU s", flush=True)
    return {'set': name, 'images': len(items), 'true_share': true_share,
            'true_shares': {it.rel: float(g.mean()) for it, g in zip(items, gts)},
            'class_rank': class_ranks(cfg, items),
            'classifiers': [e.get('label', e['name']) for e in cfg['classifiers']],
            'setting_seconds': seconds, 'rows': rows}


def end_to_end(name, cfg, gt_root, candidate, folder):
    """The generator writing a whole store of the set with the set's own
    settings and with ``candidate``'s explainers and consensus, one after the
    other in this process: CPU s per image (reading and writing included,
    after a one-image warm-up) and the store's quality."""
    import shutil
    from paddle_pssl.config import load_yaml
    from paddle_pssl.pseudo_labels import store
    from paddle_pssl.pseudo_labels.evaluate import evaluate_store
    from paddle_pssl.pseudo_labels.generate import PseudoLabelGenerator, _read_rgb
    out = {}
    for label in (DEFAULT_CONFIG, candidate):
        chosen = load_yaml(label)
        changes = {k: chosen[k] for k in ('explainers', 'consensus')}
        root = os.path.join(folder, 'e2e_store')
        shutil.rmtree(root, ignore_errors=True)
        gen = PseudoLabelGenerator(dict(cfg, **changes, output=dict(cfg['output'], pssl_root=root, batch_size=8)),
                                   '<label_fit>')
        first = gen.items[0]
        gen.explain([_read_rgb(first)[0]], [first.class_id], [0])   # warm-up: models, engine
        start = time.process_time()
        gen.run(progress=False)
        seconds = (time.process_time() - start) / len(gen.items)
        quality = evaluate_store(root, gt_root)
        shares = [float(store.read_label(os.path.join(root, rel))[0].mean())
                  for rel, _, _ in store.list_labels(root)[0]]
        out[label] = {'cpu_s': seconds, 'miou': quality['miou'], 'fg_iou': quality['fg_iou'],
                      'share': float(np.mean(shares))}
        shutil.rmtree(root, ignore_errors=True)
    base = out[DEFAULT_CONFIG]
    lines = [f'\n{name}, end to end (tools/generate_pssl.py\'s generator writing the store, one run):',
             '| settings | share | fg IoU | mIoU | CPU s/img | x default |', '|---|---|---|---|---|---|']
    for label, r in out.items():
        lines.append(f"| {os.path.relpath(label)} | {r['share']:.3f} | {r['fg_iou']:.3f} | {r['miou']:.3f} | {r['cpu_s']:.2f} | "
                     f"{r['cpu_s'] / base['cpu_s']:.2f} |")
    return out, '\n'.join(lines)


def on_front(rows, quality='fg_iou'):
    """Rows that no other row beats on both CPU seconds and ``quality``."""
    return [r for r in rows if not any(
        o['cpu_s'] <= r['cpu_s'] and o[quality] >= r[quality] and
        (o['cpu_s'] < r['cpu_s'] or o[quality] > r[quality]) for o in rows)]


def table(res):
    rows = res['rows']
    base = next(r for r in rows if (r['maps'], r['cut']) == DEFAULT)
    front = {id(r) for r in on_front(rows)}
    lines = [f"\n{res['set']}: {res['images']} images, true foreground share {res['true_share']:.3f}; "
             f"* on the fg IoU / CPU s front; goal: |share - truth| <= 0.05, fg IoU >= default + 0.05, "
             f"cost <= 2x default",
             '| maps | cut | share | abs d share | fg IoU | mean fg IoU | mIoU | CPU s/img | x default | goal |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in sorted(rows, key=lambda r: r['cpu_s']):
        goal = (abs(r['share'] - res['true_share']) <= 0.05, r['fg_iou'] >= base['fg_iou'] + 0.05,
                r['cpu_s'] <= 2 * base['cpu_s'])
        lines.append(f"| {r['maps']}{' *' if id(r) in front else ''} | {r['cut']} | {r['share']:.3f} | "
                     f"{r['abs_d_share']:.3f} | {r['fg_iou']:.3f} | {r['mean_fg_iou']:.3f} | {r['miou']:.3f} | "
                     f"{r['cpu_s']:.2f} | {r['cpu_s'] / base['cpu_s']:.2f} | "
                     f"{''.join('y' if g else '-' for g in goal)} |")
    return '\n'.join(lines)


def paired(res, key):
    """Per-image fg IoU and |share - truth| of row ``key`` minus the default's,
    paired over the set's images, each with its 95 % interval."""
    from paddle_pssl.benchmark.stats import fmt_difference, paired_difference
    rows = {(r['maps'], r['cut']): r for r in res['rows']}
    if tuple(key) not in rows:
        return f"{res['set']}: no row {key}"
    row, base = rows[tuple(key)], rows[DEFAULT]
    images = sorted(base['per_image'])
    out = []
    for what, value in (('fg IoU', lambda r, i: r['per_image'][i]['fg_iou']),
                        ('|share - truth|', lambda r, i: abs(r['per_image'][i]['share'] - res['true_shares'][i]))):
        d = paired_difference([value(row, i) for i in images], [value(base, i) for i in images])
        out.append(f'{what} {fmt_difference(d)}')
    return f"{res['set']}: {key[0]} | {key[1]} - default, per image (n = {len(images)}): " + '; '.join(out)


def per_image_table(res, keys):
    """Share and fg IoU of each image under the rows ``keys`` (the default first)."""
    rows = {(r['maps'], r['cut']): r for r in res['rows']}
    keys = [DEFAULT] + [k for k in keys if k != DEFAULT and k in rows]
    lines = [f"\n{res['set']}, image by image: label share / fg IoU; rank = the class's rank in the "
             f"classifiers' mean probability",
             '| image | rank | true share | ' + ' | '.join(f'{m}, {c}' for m, c in keys) + ' |',
             '|---|---|---|' + '---|' * len(keys)]
    for image, truth in res['true_shares'].items():
        cells = [f"{rows[k]['per_image'][image]['share']:.2f} / {rows[k]['per_image'][image]['fg_iou']:.2f}"
                 for k in keys]
        lines.append(f"| {os.path.basename(image)} | {res['class_rank'][image]} | {truth:.3f} | "
                     + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot(results, png, highlight=None):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    qualities = (('miou', 'label mIoU'), ('fg_iou', 'foreground IoU (pooled)'),
                 ('share', 'foreground share of the labels'))
    fig, axes = plt.subplots(len(qualities), len(results), figsize=(6.4 * len(results), 13.5), squeeze=False,
                             layout='constrained')
    cuts = list(CUTS)
    markers = 'os^vD<>phH*XPd8'
    palette = plt.get_cmap('tab20')

    def colours(i):   # the strong tab20 colours first, then their light twins
        return palette((2 * i) % 20 + (2 * i) // 20)
    for col, res in enumerate(results):
        rows = res['rows']
        for row_index, (quality, axis_label) in enumerate(qualities):
            ax = axes[row_index][col]
            for r in rows:
                maps_index = list(MAPS).index(r['maps'])
                ax.scatter(r['cpu_s'], r[quality], marker=markers[cuts.index(r['cut']) % len(markers)],
                           color=colours(maps_index), s=28, alpha=0.8)
            if quality != 'share':
                front = sorted(on_front(rows, quality), key=lambda r: r['cpu_s'])
                ax.plot([r['cpu_s'] for r in front], [r[quality] for r in front], 'k--', lw=0.8)
            else:
                ax.axhline(res['true_share'], color='k', lw=0.8)
                ax.axhspan(res['true_share'] - 0.05, res['true_share'] + 0.05, color='grey', alpha=0.15)
                ax.text(0.01, res['true_share'], 'true share', fontsize=7, va='bottom',
                        transform=ax.get_yaxis_transform())
            for key, colour, text in ((DEFAULT, 'red', 'default'), (highlight, 'green', 'recommended')):
                r = next((r for r in rows if (r['maps'], r['cut']) == key), None) if key else None
                if r is not None:
                    ax.scatter([r['cpu_s']], [r[quality]], s=190, facecolors='none', edgecolors=colour, lw=1.5)
                    ax.annotate(text, (r['cpu_s'], r[quality]), fontsize=7, color=colour,
                                xytext=(6, 6), textcoords='offset points')
            ax.set_xscale('log')
            ax.set_xlabel('CPU seconds per image (one core)')
            ax.set_ylabel(axis_label)
            ax.set_title(f"{res['set']}: {res['images']} images, {', '.join(res['classifiers'])}", fontsize=8)
    from matplotlib.patches import Patch
    handles = [Patch(color=colours(i), label=f'maps: {m}') for i, m in enumerate(MAPS)]
    handles += [plt.Line2D([], [], color='grey', marker=markers[i % len(markers)], ls='', label=c)
                for i, c in enumerate(cuts)]
    fig.legend(handles=handles, loc='outside lower center', ncol=3 if len(results) > 1 else 2, fontsize=7,
               frameon=False)
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    fig.savefig(png, dpi=100)
    print(f'wrote {png}')


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--work', default='output/label_fit', help='maps cache, sets and results')
    p.add_argument('--run', default=None, help='a finished benchmark folder (default: make <work>/benchmark)')
    p.add_argument('--sets', nargs='+', default=['real', 'benchmark'], choices=['real', 'benchmark'])
    p.add_argument('--engine', default='inference', choices=['inference', 'dygraph'])
    p.add_argument('--png', default=None, help='the plot (default: <work>/label_fit_front.png)')
    p.add_argument('--recommend', nargs=2, default=None, metavar=('MAPS', 'CUT'),
                   help='ring this row green and pair it with the default image by image')
    p.add_argument('--compare', nargs=2, action='append', metavar=('MAPS', 'CUT'),
                   help='pair this row with the default image by image (repeatable)')
    p.add_argument('--replot', action='store_true', help='tables and plot from <work>/<set>.json only')
    p.add_argument('--check', default=None, metavar='CONFIG',
                   help="also run the generator end to end with this config's explainers and consensus "
                        "against the default config's, e.g. configs/pseudo_labels/cam_smoothgrad.yml")
    args = p.parse_args()
    from paddle_pssl.pseudo_labels.generate import PseudoLabelGenerator
    results = []
    for name in args.sets:
        if args.replot:
            with open(os.path.join(args.work, f'{name}.json')) as f:
                results.append(json.load(f))
            continue
        folder = os.path.join(args.work, name)
        if name == 'real':
            cfg, gt_root = real_set(folder, args.engine)
        else:
            run = args.run or os.path.dirname(os.path.dirname(prepare_benchmark(os.path.join(folder, 'run'))))
            cfg, gt_root = benchmark_set(run, args.engine)
            cfg['output']['pssl_root'] = os.path.join(folder, 'store')
        items = PseudoLabelGenerator(cfg, '<label_fit>').items
        maps, seconds = cached_maps(cfg, items, os.path.join(folder, 'maps'), 2 if name == 'real' else 8)
        res = score_set(name, cfg, gt_root, items, maps, seconds)
        if args.check:
            res['end_to_end'], res['end_to_end_table'] = end_to_end(name, cfg, gt_root, args.check, folder)
        with open(os.path.join(args.work, f'{name}.json'), 'w') as f:
            json.dump(res, f, indent=1)
        results.append(res)
    for res in results:
        print(table(res))
    chosen = [tuple(k) for k in args.compare or []] + ([tuple(args.recommend)] if args.recommend else [])
    for res in results:
        if res['images'] <= 20:
            print(per_image_table(res, chosen))
    for key in chosen:
        for res in results:
            print(paired(res, key))
    for res in results:
        if res.get('end_to_end_table'):
            print(res['end_to_end_table'])
    plot(results, args.png or os.path.join(args.work, 'label_fit_front.png'),
         tuple(args.recommend) if args.recommend else None)


if __name__ == '__main__':
    main()
