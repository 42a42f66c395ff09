"""HFPL on the benchmark: ResNet18_vd classifiers trained on the source set
with the plain GAP loss, with importance sampling (IS), with the feature-
similarity loss (FS), and with both; the exact CAM of each becomes pseudo
labels (the generator with ``cam`` only) scored against the exact masks:
mIoU, foreground IoU and boundary F-score (2 px tolerance).

This comparison trains and explains at ``input_size`` (default 128) and
output stride 32 (a 4x4 CAM), as it was measured; the main benchmark's
classifiers run at stride 8 instead.

    python -m paddle_pssl.benchmark.ext_hfpl --out output/benchmark   # reuse a finished run
"""
import json
import os
import shutil
import sys

import numpy as np

from ..pseudo_labels import store
from ..pseudo_labels.evaluate import boundary_f_score, evaluate_store, gt_path, read_gt_mask

VARIANTS = {
    'GAP only': 'configs/classifiers/resnet18_vd_source.yml',
    '+ IS': 'configs/classifiers/resnet18_vd_source_hfpl_is.yml',
    '+ FS': 'configs/classifiers/resnet18_vd_source_hfpl_fs.yml',
    '+ IS + FS': 'configs/classifiers/resnet18_vd_source_hfpl.yml',
}


def _slug(name):
    return name.replace('+', 'with').replace(' ', '_').lower()


def run(bench, input_size=128, iters=40):
    from .common import config_path, scaled
    from .jobs import tool
    from ..pseudo_labels.generate import PseudoLabelGenerator
    out = os.path.join(bench.out, 'hfpl')
    jobs, dirs = {}, {}
    for name, config in VARIANTS.items():
        save_dir = os.path.join(out, 'classifiers', _slug(name))
        dirs[name] = save_dir
        jobs[f'hfpl_classifier_{_slug(name)}'] = [[
            *tool('train_cls'), '-c', config_path(config), '--save_dir', save_dir,
            '--seed', str(bench.cfg['seed']), '--iters', str(scaled(iters, bench.cfg['scale'])), '--use_vdl',
            '--opts', f'model.input_size={input_size}', 'model.output_stride=32',
            f"train_dataset.image_root={bench.source['image_root']}",
            f"train_dataset.synsets={bench.source['synsets']}"]]
    bench.run_jobs(jobs)
    rows = []
    for name in VARIANTS:
        with open(os.path.join(dirs[name], 'train_cls.json')) as f:
            report = json.load(f)
        label_root = os.path.join(out, 'labels', _slug(name))
        if os.path.isdir(label_root):
            shutil.rmtree(label_root)
        cfg = dict(bench.label_cfg, explainers={'cam': {}},
                   output=dict(bench.label_cfg['output'], pssl_root=label_root, vdl_every=0),
                   classifiers=[{'name': report['config']['model']['name'], 'label': 'resnet18_vd',
                                 'weights': report['weights'], 'num_classes': report['num_classes'],
                                 'input_size': input_size}])
        PseudoLabelGenerator(cfg, '<hfpl>').run(progress=False)
        quality = evaluate_store(label_root, bench.source['gt_root'])
        scores = []
        for line in open(os.path.join(label_root, store.FILE_LIST)).read().split():
            mask, _ = store.read_label(os.path.join(label_root, line))
            gt = read_gt_mask(gt_path(bench.source['gt_root'], store.image_relpath(line)), mask.shape)
            scores.append(boundary_f_score(mask, gt, tolerance=2))
        rows.append([name, report.get('val_acc') or 0.0, quality['miou'], quality['fg_iou'],
                     float(np.mean(scores))])
    return {'title': f'HFPL: CAM pseudo labels of ResNet18_vd trained with each loss ({input_size} px, '
                     f'{iters} iterations)',
            'header': ['classifier loss', 'val acc', 'CAM label mIoU', 'fg IoU', 'boundary F (2 px)'],
            'rows': rows,
            'note': 'IS: 0.8 x multi-label BCE on GAP + 0.2 x importance sampling (S = 10); FS: windowed '
                    'feature-similarity loss; configs in configs/classifiers/. One seed.'}


class _Reloaded:
    """The state ext_* need, rebuilt from a finished benchmark directory."""

    def __init__(self, out):
        import yaml
        self.out = os.path.abspath(out)
        with open(os.path.join(self.out, 'results.json')) as f:
            self.results = json.load(f)
        self.cfg = self.results['config']
        data = os.path.join(self.out, 'data', 'source')
        self.source = {'image_root': os.path.join(data, 'images'), 'gt_root': os.path.join(data, 'gt'),
                       'synsets': os.path.join(data, 'synsets.txt')}
        with open(os.path.join(self.out, 'configs', 'pseudo_labels.yml')) as f:
            self.label_cfg = yaml.safe_load(f)


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description='HFPL rows for a finished benchmark run.')
    p.add_argument('--out', default='output/benchmark')
    p.add_argument('--input_size', type=int, default=128)
    p.add_argument('--iters', type=int, default=40)
    args = p.parse_args(argv)
    bench = _Reloaded(args.out)
    table = run(bench, args.input_size, args.iters)
    from .report import append_extension
    append_extension(bench.out, 'hfpl', table)
    print(open(os.path.join(bench.out, 'results.md')).read())


if __name__ == '__main__':
    main(sys.argv[1:])
