"""Pseudo-label quality on the real photos with real masks that install
offline (paddle_pssl.datasets.real_photos): IoU of each explainer alone,
each classifier alone and the ensemble consensus, for several threshold
rules (the ensemble also under every consensus.method; for the EM methods
'fixed:0.5' is the posterior cut); then the full generator writes a store
that tools/eval_pseudo_labels scores. A handful of images: a regression
check with real pixels, not a benchmark.

    python benchmarks/label_quality_real.py [--lime_samples 256] [--smoothgrad_samples 16]
"""
import argparse
import itertools
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402  (zlib before paddle)
import cv2  # noqa: E402

from paddle_pssl.datasets.real_photos import make_real_masked_set  # noqa: E402
from paddle_pssl.pseudo_labels import consensus as cons  # noqa: E402
from paddle_pssl.pseudo_labels.evaluate import IoUCounter, evaluate_store, gt_path, read_gt_mask  # noqa: E402
from paddle_pssl.pseudo_labels.generate import PseudoLabelGenerator  # noqa: E402
from paddle_pssl.pseudo_labels.writer import image_seed  # noqa: E402

CLASSIFIERS = ['efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2']
EXPLAINERS = ['cam', 'gradcam', 'smoothgrad', 'lime']
RULES = [('mean', 1.0), ('mean', 1.5), ('otsu', 0), ('fixed', 0.5), ('percentile', 0.3)]


def score(groups, maps, gts, class_ids, rule, combine='mean'):
    counter = IoUCounter()
    for image_maps, gt, cid in zip(maps, gts, class_ids):
        chosen = [image_maps[k] for k in groups]
        _, mask, _ = cons.make_pseudo_label(chosen, None, 'none', *rule, combine=combine)
        counter.add(mask, gt, cid)
    return counter.result()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--lime_samples', type=int, default=256)
    p.add_argument('--smoothgrad_samples', type=int, default=16)
    p.add_argument('--work', default=None)
    args = p.parse_args()
    work = args.work or tempfile.mkdtemp(prefix='label_quality_')
    data = make_real_masked_set(os.path.join(work, 'set'))
    cfg = {'seed': 0,
           'source': {'image_root': data['image_root'], 'synsets': data['synsets']},
           'classifiers': [{'name': n, 'input_size': 224} for n in CLASSIFIERS],
           'explainers': {'cam': {}, 'gradcam': {}, 'smoothgrad': {'n_samples': args.smoothgrad_samples},
                          'lime': {'num_samples': args.lime_samples}},
           'output': {'pssl_root': os.path.join(work, 'store'), 'batch_size': 2}}
    gen = PseudoLabelGenerator(cfg, '<label_quality_real>')
    images = [cv2.cvtColor(cv2.imread(it.image_path), cv2.COLOR_BGR2RGB) for it in gen.items]
    class_ids = [it.class_id for it in gen.items]
    gts = [read_gt_mask(gt_path(data['gt_root'], it.rel)) for it in gen.items]
    maps = gen.explain(images, class_ids, [image_seed(0, it.rel) for it in gen.items])

    groups = {f'{c}/{e}': [f'{c}/{e}'] for c, e in itertools.product(CLASSIFIERS, EXPLAINERS)}
    groups.update({f'{c} (4 explainers)': [f'{c}/{e}' for e in EXPLAINERS] for c in CLASSIFIERS})
    groups.update({f'{e} (3 classifiers)': [f'{c}/{e}' for c in CLASSIFIERS] for e in EXPLAINERS})
    groups['ensemble (3 x 4)'] = [f'{c}/{e}' for c, e in itertools.product(CLASSIFIERS, EXPLAINERS)]
    methods = [m for m in cons.METHODS if m != 'mean']
    header = ' | '.join(f'{m}:{v:g}' for m, v in RULES)
    print(f'{len(images)} real photos; mIoU (fg IoU) per threshold rule')
    print(f'| maps | {header} |')
    print('|---|' + '---|' * len(RULES))
    for name, keys in groups.items():
        cells = []
        for rule in RULES:
            r = score(keys, maps, gts, class_ids, rule)
            cells.append(f"{r['miou']:.3f} ({r['fg_iou']:.3f})")
        print(f'| {name} | ' + ' | '.join(cells) + ' |')
    for method in methods:   # the other consensus methods on the whole ensemble
        cells = []
        for rule in RULES:
            r = score(groups['ensemble (3 x 4)'], maps, gts, class_ids, rule, method)
            cells.append(f"{r['miou']:.3f} ({r['fg_iou']:.3f})")
        print(f'| ensemble, consensus.method {method} | ' + ' | '.join(cells) + ' |')
    counts = gen.run(progress=False)
    result = evaluate_store(gen.root, data['gt_root'])
    print(f"\ngenerator store (defaults: {gen.cfg['consensus']}): written {counts['written']}, "
          f"mIoU {result['miou']:.3f}, fg IoU {result['fg_iou']:.3f}  [{gen.root}]")


if __name__ == '__main__':
    main()
