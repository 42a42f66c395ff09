"""Label mIoU of every consensus method, from explanation maps cached once.

Two sources of maps with exact masks:
  real       the real masked photos (Lite0/1/2 at 224, cam, gradcam,
             smoothgrad, lime), as benchmarks/label_quality_real.py builds them;
  benchmark  source images of a finished benchmark run (its classifiers and
             its configs/pseudo_labels.yml, masks under data/source/gt).

The first run explains the images and saves the maps (``--cache``); later runs
only score. Each member alone, the plain mean (mean x1.0 and Otsu) and every
consensus method are scored with the label store's IoU counter.

    python benchmarks/consensus_methods.py real --cache /tmp/real_maps.npz
    python benchmarks/consensus_methods.py benchmark --run /work/baseline_out \\
        --per_class 10 --cache /tmp/bench_maps.npz
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402,F401  (zlib before paddle)
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from paddle_pssl.pseudo_labels import consensus as cons  # noqa: E402
from paddle_pssl.pseudo_labels.evaluate import IoUCounter, gt_path, read_gt_mask  # noqa: E402
from paddle_pssl.pseudo_labels.writer import image_seed  # noqa: E402

REAL_CLASSIFIERS = ['efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2']


def _explain(cfg, items_filter=None):
    from paddle_pssl.pseudo_labels.generate import PseudoLabelGenerator
    gen = PseudoLabelGenerator(cfg, '<consensus_methods>')
    items = [it for it in gen.items if items_filter is None or items_filter(it)]
    names, maps, rels, class_ids = None, [], [], []
    batch = int(cfg['output'].get('batch_size', 8))
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        images = [cv2.cvtColor(cv2.imread(it.image_path), cv2.COLOR_BGR2RGB) for it in chunk]
        per_image = gen.explain(images, [it.class_id for it in chunk],
                                [image_seed(cfg['seed'], it.rel) for it in chunk])
        for it, image_maps in zip(chunk, per_image):
            names = names or sorted(image_maps)
            maps.append(np.stack([image_maps[n] for n in names]).astype(np.float32))
            rels.append(it.rel)
            class_ids.append(it.class_id)
        print(f'explained {min(start + batch, len(items))}/{len(items)}', flush=True)
    return names, maps, rels, class_ids


def explain_real(args):
    from paddle_pssl.datasets.real_photos import make_real_masked_set
    work = tempfile.mkdtemp(prefix='consensus_real_')
    data = make_real_masked_set(os.path.join(work, 'set'))
    cfg = {'seed': 0,
           'source': {'image_root': data['image_root'], 'synsets': data['synsets']},
           'classifiers': [{'name': n, 'input_size': 224} for n in REAL_CLASSIFIERS],
           'explainers': {'cam': {}, 'gradcam': {}, 'smoothgrad': {'n_samples': args.smoothgrad_samples},
                          'lime': {'num_samples': args.lime_samples}},
           'output': {'pssl_root': os.path.join(work, 'store'), 'batch_size': 2}}
    return _explain(cfg) + (data['gt_root'],)


def explain_benchmark(args):
    from paddle_pssl.config.loader import load_yaml
    cfg = load_yaml(os.path.join(args.run, 'configs', 'pseudo_labels.yml'))
    cfg['output'] = dict(cfg.get('output') or {}, vdl_every=0,
                         pssl_root=tempfile.mkdtemp(prefix='consensus_bench_'))
    seen = {}

    def take(item):   # the first --per_class images of every class, in list order
        seen[item.class_id] = seen.get(item.class_id, 0) + 1
        return seen[item.class_id] <= args.per_class
    return _explain(cfg, take) + (os.path.join(args.run, 'data', 'source', 'gt'),)


def load_or_explain(args):
    if args.cache and os.path.exists(args.cache):
        z = np.load(args.cache, allow_pickle=False)
        n = int(z['count'])
        return ([str(s) for s in z['names']], [z[f'maps_{i}'] for i in range(n)],
                [z[f'gt_{i}'] for i in range(n)], [int(c) for c in z['class_ids']])
    names, maps, rels, class_ids, gt_root = (explain_real if args.source == 'real'
                                             else explain_benchmark)(args)
    gts = [read_gt_mask(gt_path(gt_root, rel), m.shape[1:]) for rel, m in zip(rels, maps)]
    if args.cache:
        os.makedirs(os.path.dirname(os.path.abspath(args.cache)), exist_ok=True)
        np.savez_compressed(args.cache, names=np.array(names), count=len(maps),
                            class_ids=np.array(class_ids), rels=np.array(rels),
                            **{f'maps_{i}': m for i, m in enumerate(maps)},
                            **{f'gt_{i}': g for i, g in enumerate(gts)})
    return names, maps, gts, class_ids


def score(maps, gts, class_ids, members, **kw):
    """-> (mIoU, fg IoU, mean foreground share) of make_pseudo_label(**kw)."""
    counter, shares = IoUCounter(), []
    for stack, gt, cid in zip(maps, gts, class_ids):
        _, mask, _ = cons.make_pseudo_label([stack[j] for j in members], **kw)
        counter.add(mask, gt, cid)
        shares.append(float(mask.mean()))
    r = counter.result()
    return r['miou'], r['fg_iou'], float(np.mean(shares))


def rows(names):
    """(row name, member indices, make_pseudo_label keywords)."""
    every = list(range(len(names)))
    out = [(n, [j], {'method': 'mean', 'value': 1.0}) for j, n in enumerate(names)]
    out += [(f'{n} otsu', [j], {'method': 'otsu'}) for j, n in enumerate(names)]
    out += [('mean x1.0', every, {'method': 'mean', 'value': 1.0}),
            ('mean otsu', every, {'method': 'otsu'}),
            ('loo mean x1.0', every, {'combine': 'loo', 'method': 'mean', 'value': 1.0}),
            ('loo otsu', every, {'combine': 'loo', 'method': 'otsu'}),
            ('staple (maps cut mean x1.0) posterior', every,
             {'combine': 'staple', 'method': 'posterior', 'value': 1.0, 'member_method': 'mean'}),
            ('staple (maps cut otsu) posterior', every,
             {'combine': 'staple', 'method': 'posterior', 'member_method': 'otsu'}),
            ('staple (maps cut otsu), W otsu', every,
             {'combine': 'staple', 'method': 'otsu', 'member_method': 'otsu'}),
            ('soft_staple posterior', every, {'combine': 'soft_staple', 'method': 'posterior'}),
            ('soft_staple, W otsu', every, {'combine': 'soft_staple', 'method': 'otsu'})]
    no_lime = [j for j, n in enumerate(names) if not n.endswith('/lime')]
    if len(no_lime) < len(every):   # the reference: the plain mean without LIME
        out += [('mean x1.0, no lime', no_lime, {'method': 'mean', 'value': 1.0}),
                ('mean otsu, no lime', no_lime, {'method': 'otsu'})]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('source', choices=['real', 'benchmark'])
    p.add_argument('--cache', default=None, help='npz of the maps: read if it exists, else written')
    p.add_argument('--run', default='/work/baseline_out', help='benchmark run folder (source benchmark)')
    p.add_argument('--per_class', type=int, default=10)
    p.add_argument('--lime_samples', type=int, default=64)
    p.add_argument('--smoothgrad_samples', type=int, default=16)
    p.add_argument('--explain_only', action='store_true')
    args = p.parse_args()
    names, maps, gts, class_ids = load_or_explain(args)
    if args.explain_only:
        return
    truth = float(np.mean([g.mean() for g in gts]))
    print(f'{len(maps)} images, {len(names)} members; true foreground share {truth:.3f}')
    print('| consensus | mIoU | fg IoU | fg share |\n|---|---|---|---|')
    for name, members, kw in rows(names):
        miou, fg, share = score(maps, gts, class_ids, members, **kw)
        print(f'| {name} | {miou:.3f} | {fg:.3f} | {share:.3f} |', flush=True)
    # the same rule for everyone: does weighting beat the best member, rule for rule?
    every = list(range(len(names)))
    print('\nmIoU per rule (renormalize, cut); staple cuts each map by the rule, then W > 0.5')
    print('| renormalize | cut | best member | mean | loo | staple |\n|---|---|---|---|---|---|')
    for renorm in ('none', 'minmax'):
        for method, value in (('mean', 1.0), ('mean', 1.5), ('otsu', 0.0)):
            kw = {'renorm': renorm, 'method': method, 'value': value}
            best = max((score(maps, gts, class_ids, [j], **kw)[0], names[j]) for j in every)
            cells = [f'{score(maps, gts, class_ids, every, combine=c, **kw)[0]:.3f}' for c in ('mean', 'loo')]
            staple = score(maps, gts, class_ids, every, combine='staple', renorm=renorm,
                           method='posterior', member_method=method, member_value=value)[0]
            cells.append(f'{staple:.3f}')
            cut = f'{method} x{value:g}' if method == 'mean' else method
            print(f'| {renorm} | {cut} | {best[0]:.3f} ({best[1]}) | '
                  + ' | '.join(cells) + ' |', flush=True)


if __name__ == '__main__':
    main()
