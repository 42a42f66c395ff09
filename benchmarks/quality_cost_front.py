"""The generator's quality/cost front: label mIoU against measured CPU seconds
per image, for explainer subsets and sample counts.

Grid: SmoothGrad 0/4/8/16 x LIME 0/64/256 x with/without Grad-CAM, CAM always
(where the classifier has an exact CAM), scored under several consensus rules.

Every explainer setting (cam, gradcam, smoothgrad 4/8/16, lime 64/256) runs
once per classifier through the generator's own ``explain`` (the configured
engine: Paddle Inference for forward-only passes), timed in CPU seconds of this
process (Paddle computes on one thread here) after one untimed warm-up image.
A configuration's cost is the sum of its settings' seconds plus the measured
seconds of its consensus; image decoding and label writing are left out (the
same for every configuration). ``benchmarks/bench_generator.py`` times whole
generator runs, as a check of these sums.

Two sources of images with exact masks:
  real       the real masked photos (paddle_pssl.datasets.real_photos), EfficientNet-Lite0/1/2 at 224
             (the offline default ensemble);
  benchmark  the first --per_class source images of each class of a finished
             ``tools/benchmark_pssl.py`` run, explained by its classifiers.

    python benchmarks/quality_cost_front.py real --out output/front/real.json
    python benchmarks/quality_cost_front.py benchmark --run output/benchmark --out output/front/benchmark.json
    python benchmarks/quality_cost_front.py plot output/front/real.json output/front/benchmark.json \\
        --png docs/quality_cost_front.png
"""
import argparse
import itertools
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402,F401  (zlib before paddle)
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from paddle_pssl.pseudo_labels import consensus as cons  # noqa: E402
from paddle_pssl.pseudo_labels.evaluate import IoUCounter, gt_path, read_gt_mask  # noqa: E402
from paddle_pssl.pseudo_labels.writer import image_seed  # noqa: E402
from paddle_pssl.utils.errors import PSSLError  # noqa: E402

SETTINGS = {'cam': ('cam', {}), 'gradcam': ('gradcam', {}),
            'sg4': ('smoothgrad', {'n_samples': 4}), 'sg8': ('smoothgrad', {'n_samples': 8}),
            'sg16': ('smoothgrad', {'n_samples': 16}),
            'lime64': ('lime', {'num_samples': 64}), 'lime256': ('lime', {'num_samples': 256})}
RULES = {   # name -> make_pseudo_label keywords
    'mean x1.0': {'method': 'mean', 'value': 1.0},
    'otsu': {'method': 'otsu'},
    'loo, mean x1.0': {'combine': 'loo', 'method': 'mean', 'value': 1.0},
    'loo, otsu': {'combine': 'loo', 'method': 'otsu'},
    'staple, posterior': {'combine': 'staple', 'method': 'posterior', 'member_method': 'otsu'},
}
REAL_CLASSIFIERS = [{'name': 'efficientnet_lite0', 'input_size': 224},
                    {'name': 'efficientnet_lite1', 'input_size': 224},
                    {'name': 'efficientnet_lite2', 'input_size': 224}]


GRADCAM = {'with': 'with Grad-CAM', 'no': 'no Grad-CAM', 'fallback': 'Grad-CAM where no CAM'}


def configurations():
    """(name, settings, Grad-CAM mode) over the grid; CAM is in every one.
    Grad-CAM 'fallback' explains only the classifiers without an exact CAM
    (on pooling + linear heads the two maps are the same)."""
    out = []
    for sg, lime, gradcam in itertools.product((0, 4, 8, 16), (0, 64, 256), GRADCAM):
        settings = (['cam'] + (['gradcam'] if gradcam != 'no' else []) + ([f'sg{sg}'] if sg else [])
                    + ([f'lime{lime}'] if lime else []))
        out.append((f'SG {sg}, LIME {lime}, {GRADCAM[gradcam]}', settings, gradcam))
    return out


def members_of(maps, settings, gradcam):
    """The map keys a configuration averages."""
    keys = [k for k in sorted(maps) if k.split('/')[1] in settings]
    if gradcam == 'fallback':
        keys = [k for k in keys if not (k.endswith('/gradcam') and k[:-len('gradcam')] + 'cam' in maps)]
    return keys


def _images(items):
    return [cv2.cvtColor(cv2.imread(it.image_path), cv2.COLOR_BGR2RGB) for it in items]


def explain_all(base_cfg, items, batch, settings=None):
    """{'<classifier>/<setting>': [map per image]}, {same key: CPU s per image};
    ``settings`` {name: (explainer, options)}, default :data:`SETTINGS`."""
    from paddle_pssl.pseudo_labels.generate import PseudoLabelGenerator
    images = _images(items)
    ids = [it.class_id for it in items]
    seeds = [image_seed(base_cfg['seed'], it.rel) for it in items]
    maps, seconds = {}, {}
    for entry in base_cfg['classifiers']:
        label = entry.get('label', entry['name'])
        for setting, (kind, kw) in (settings or SETTINGS).items():
            cfg = dict(base_cfg, classifiers=[entry], explainers={kind: kw})
            try:
                gen = PseudoLabelGenerator(cfg, '<front>')
                gen.explain(images[:1], ids[:1], seeds[:1])   # warm-up: models, engine
            except PSSLError as e:
                print(f'{label}/{setting}: skipped ({e})', flush=True)
                continue
            key, out = f'{label}/{setting}', []
            start = time.process_time()
            for i in range(0, len(images), batch):
                got = gen.explain(images[i:i + batch], ids[i:i + batch], seeds[i:i + batch])
                out += [m[f'{label}/{kind}'].astype(np.float32) for m in got]
            seconds[key] = (time.process_time() - start) / len(images)
            maps[key] = out
            print(f'{key}: {seconds[key]:.3f} CPU s/img', flush=True)
    return maps, seconds


def source_items(args):
    from paddle_pssl.config.loader import load_yaml
    from paddle_pssl.pseudo_labels.generate import PseudoLabelGenerator
    if args.source == 'real':
        from paddle_pssl.datasets.real_photos import make_real_masked_set
        work = tempfile.mkdtemp(prefix='front_real_')
        data = make_real_masked_set(os.path.join(work, 'set'))
        cfg = {'seed': 0, 'source': {'image_root': data['image_root'], 'synsets': data['synsets']},
               'classifiers': REAL_CLASSIFIERS, 'explainers_engine': args.engine,
               'output': {'pssl_root': os.path.join(work, 'store'), 'vdl_every': 0}}
        gt_root = data['gt_root']
    else:
        cfg = load_yaml(os.path.join(args.run, 'configs', 'pseudo_labels.yml'))
        cfg['explainers_engine'] = args.engine
        cfg['output'] = dict(cfg.get('output') or {}, vdl_every=0,
                             pssl_root=tempfile.mkdtemp(prefix='front_bench_'))
        gt_root = os.path.join(args.run, 'data', 'source', 'gt')
    items = PseudoLabelGenerator(cfg, '<front>').items
    if args.source == 'benchmark':
        seen = {}
        keep = []
        for it in items:   # the first --per_class images of every class, in list order
            seen[it.class_id] = seen.get(it.class_id, 0) + 1
            if seen[it.class_id] <= args.per_class:
                keep.append(it)
        items = keep
    return cfg, items[:args.max_images], gt_root


def maps_and_seconds(args, cfg, items):
    """explain_all, or its earlier result from --cache (written when absent)."""
    if args.cache and os.path.exists(args.cache):
        z = np.load(args.cache, allow_pickle=False)
        seconds = json.loads(str(z['seconds']))
        return {k: [z[f'{k}|{i}'] for i in range(len(items))] for k in seconds}, seconds
    maps, seconds = explain_all(cfg, items, 8 if args.source == 'benchmark' else 2)
    if args.cache:
        os.makedirs(os.path.dirname(os.path.abspath(args.cache)), exist_ok=True)
        np.savez_compressed(args.cache, seconds=json.dumps(seconds),
                            **{f'{k}|{i}': m for k, ms in maps.items() for i, m in enumerate(ms)})
    return maps, seconds


def score(args):
    cfg, items, gt_root = source_items(args)
    maps, seconds = maps_and_seconds(args, cfg, items)
    gts = [read_gt_mask(gt_path(gt_root, it.rel), maps[next(iter(maps))][i].shape)
           for i, it in enumerate(items)]
    labels = sorted({k.split('/')[0] for k in maps})
    rows = []
    singles = {}
    for key in sorted(maps):   # each map alone, under each cut the rules use
        singles[key] = {}
        for cut, kw in (('mean x1.0', {'method': 'mean', 'value': 1.0}), ('otsu', {'method': 'otsu'})):
            c = IoUCounter()
            for i, it in enumerate(items):
                c.add(cons.pseudo_mask(maps[key][i], **kw), gts[i], it.class_id)
            singles[key][cut] = c.result()['miou']
    for name, settings, gradcam in configurations():
        keys = members_of(maps, settings, gradcam)
        row = {'config': name, 'settings': settings, 'members': keys,
               'explain_s': float(sum(seconds[k] for k in keys)), 'miou': {}, 'fg_share': {},
               'consensus_s': {}}
        for rule, kw in RULES.items():
            counter, shares = IoUCounter(), []
            start = time.process_time()
            for i, it in enumerate(items):
                _, mask, _ = cons.make_pseudo_label([maps[k][i] for k in keys], **kw)
                counter.add(mask, gts[i], it.class_id)
                shares.append(float(mask.mean()))
            row['consensus_s'][rule] = (time.process_time() - start) / len(items)
            row['miou'][rule] = counter.result()['miou']
            row['fg_share'][rule] = float(np.mean(shares))
        rows.append(row)
        print(f"{name}: {cost(row, args.rule):.2f} s/img, " + ', '.join(
            f'{r} {v:.3f}' for r, v in row['miou'].items()), flush=True)
    result = {'source': args.source, 'run': args.run if args.source == 'benchmark' else None,
              'images': len(items), 'classifiers': labels, 'engine': args.engine,
              'true_fg_share': float(np.mean([g.mean() for g in gts])),
              'setting_seconds': seconds, 'single_map_miou': singles, 'rows': rows}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)
    print(f'wrote {args.out}')


def cost(row, rule):
    """CPU seconds per image of a configuration under a consensus rule."""
    return row['explain_s'] + row['consensus_s'][rule]


def on_front(rows, rule):
    """Rows no other row beats on both cost and quality; costs within 1 % count
    as equal (the consensus seconds of identical member sets differ by noise)."""
    front = []
    for r in rows:
        c, q = cost(r, rule), r['miou'][rule]
        dominated = any(cost(o, rule) <= c * 1.01 and o['miou'][rule] >= q
                        and (cost(o, rule) < c * 0.99 or o['miou'][rule] > q) for o in rows)
        if not dominated:
            front.append(r['config'])
    return front


def plot(args):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    results = []
    for path in args.inputs:
        with open(path) as f:
            results.append(json.load(f))
    fig, axes = plt.subplots(1, len(results), figsize=(6.2 * len(results), 4.6), squeeze=False)
    for index, (ax, res) in enumerate(zip(axes[0], results)):
        rows = res['rows']
        for rule, style in ((args.rule, 'o'), ('mean x1.0', 'x'))[:1 if args.rule == 'mean x1.0' else 2]:
            xs = [cost(r, rule) for r in rows]
            ys = [r['miou'][rule] for r in rows]
            ax.scatter(xs, ys, marker=style, alpha=0.85 if rule == args.rule else 0.45,
                       label=f'consensus: {rule}')
            if rule == args.rule:
                front = sorted((r for r in rows if r['config'] in on_front(rows, rule)),
                               key=lambda r: cost(r, rule))
                ax.plot([cost(r, rule) for r in front], [r['miou'][rule] for r in front], 'k--', lw=0.8)
                for r in front:
                    if r['config'].endswith('where no CAM') and any(
                            o['members'] == r['members'] for o in front if o is not r):
                        continue   # the same maps as its 'no Grad-CAM' twin
                    ax.annotate(r['config'].replace(' Grad-CAM', ' GC'), (cost(r, rule), r['miou'][rule]),
                                fontsize=6.5, xytext=(3, -8), textcoords='offset points')
        today = args.today[min(index, len(args.today) - 1)]
        for config, colour, rule in ((today, 'red', 'mean x1.0'), (args.new, 'green', args.rule)):
            row = next((r for r in rows if r['config'] == config), None)
            if row is not None:
                ax.scatter([cost(row, rule)], [row['miou'][rule]], s=160, facecolors='none', edgecolors=colour,
                           label=f"{'previous' if colour == 'red' else 'new'} default: {config}, {rule}")
        cut = 'otsu' if 'otsu' in args.rule else 'mean x1.0'
        best = max(((k, v[cut]) for k, v in res['single_map_miou'].items()), key=lambda kv: kv[1])
        ax.axhline(best[1], color='grey', lw=0.7, ls=':')
        ax.text(ax.get_xlim()[0], best[1], f' best single map, {cut} cut ({best[0]})', fontsize=6.5,
                va='bottom', color='grey')
        ax.set_xscale('log')
        ax.set_xlabel('CPU seconds per image (one core)')
        ax.set_ylabel('label mIoU')
        ax.set_title(f"{res['source']}: {res['images']} images, {', '.join(res['classifiers'])}",
                     fontsize=8)
        ax.legend(fontsize=7, loc='lower right')
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.png)), exist_ok=True)
    fig.savefig(args.png, dpi=110)
    print(f'wrote {args.png}')
    for res in results:
        print(f"\n{res['source']} ({res['images']} images; front under '{args.rule}' marked *)")
        print(f"| config | CPU s/img | mIoU mean x1.0 | mIoU {args.rule} |\n|---|---|---|---|")
        front = on_front(res['rows'], args.rule)
        for r in sorted(res['rows'], key=lambda r: cost(r, args.rule)):
            mark = ' *' if r['config'] in front else ''
            print(f"| {r['config']}{mark} | {cost(r, args.rule):.2f} | {r['miou']['mean x1.0']:.3f} | "
                  f"{r['miou'][args.rule]:.3f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('source', choices=['real', 'benchmark', 'plot'])
    p.add_argument('inputs', nargs='*', help='plot: the json files of earlier runs')
    p.add_argument('--run', default='output/benchmark', help='benchmark run folder')
    p.add_argument('--per_class', type=int, default=10)
    p.add_argument('--engine', default='inference', choices=['inference', 'dygraph'])
    p.add_argument('--rule', default='mean x1.0', choices=sorted(RULES),
                   help='the consensus rule whose time is counted and whose front is drawn')
    p.add_argument('--today', nargs='+', default=['SG 16, LIME 256, with Grad-CAM'],
                   help='plot: the previous default per input (ringed red, at mean x1.0)')
    p.add_argument('--new', default=None, help='plot: ring this config green')
    p.add_argument('--cache', default=None, help='npz of the maps and seconds: read if it exists, else written')
    p.add_argument('--max_images', type=int, default=None, help='the first N images only (a quick look)')
    p.add_argument('--out', default='output/front/front.json')
    p.add_argument('--png', default='output/front/quality_cost_front.png')
    args = p.parse_args()
    if args.source == 'plot':
        plot(args)
    else:
        score(args)


if __name__ == '__main__':
    main()
