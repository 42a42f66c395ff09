"""The own-data recipe (docs/own_data.md) on a generated example set, through
its own configs and tools, ending in its paired comparison: PSSL against the
same network with its ImageNet weights (baseline i) and with the user's
classifier backbone (baseline ii), over 5 seeds with 95 % intervals.

The set is ``make_own_data_example`` at a size that can say something: 3
classes x 40 images and 8 labelled + 64 validation segmentation images, of
96 px (the recipe's own test uses 6 images a class and 4 + 4 of 48 px). The
shipped configs run as they are, except:

- the classifier's 10 epochs are 34 iterations here (108 training images);
- pre-training and fine-tuning crop 96 px (the images' size) instead of
  256 px, with the configs' own augmentations, and run ``--pretrain_iters``
  and ``--finetune_iters`` iterations at batch 8.

Pre-training runs at each seed of ``--seeds``; the table has two PSSL rows:
``finetune_pssl`` (every fine-tuning seed from pre-training seed 0: the recipe
as a user runs it, whose interval cannot see the pre-training's own spread)
and ``finetune_pssl_pretrain_seeds`` (fine-tuning seed i from pre-training
seed i). The labels are scored against the generator's exact masks
(``tools/eval_pseudo_labels.py``). ``--ensemble`` also trains EfficientNet-
Lite1 and Lite2 classifiers, makes the labels of the three, and scores them
and their cost beside Lite0's.

    python benchmarks/recipe_example.py [--work /tmp/recipe_example] [--workers 2] [--ensemble]

Every step resumes: a step whose output exists is not run again, and the
comparison reuses its finished runs (tools/compare_finetune.py). CPU seconds
per step from os.wait4 (Paddle computes on one thread here).
"""
import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
from bench_recipe import cpu_seconds  # noqa: E402

RECIPES = os.path.join(ROOT, 'configs', 'recipes')
SIZE = 96
PRETRAIN_CROP = (f"train_dataset.transforms=[{{type: ResizeStepScaling, min_scale_factor: 0.5, "
                 f"max_scale_factor: 2.0, scale_step_size: 0}}, {{type: RandomPaddingCrop, crop_size: "
                 f"[{SIZE}, {SIZE}], label_padding_value: 255}}, {{type: RandomHorizontalFlip}}, "
                 f"{{type: RandomDistort, brightness_range: 0.2, contrast_range: 0.2, saturation_range: 0.2}}, "
                 f"{{type: Normalize}}]")
FINETUNE_CROP = (f"train_dataset.transforms=[{{type: ResizeStepScaling, min_scale_factor: 0.5, "
                 f"max_scale_factor: 2.0, scale_step_size: 0.25}}, {{type: RandomPaddingCrop, crop_size: "
                 f"[{SIZE}, {SIZE}]}}, {{type: RandomHorizontalFlip}}, {{type: RandomDistort, "
                 f"brightness_range: 0.4, contrast_range: 0.4, saturation_range: 0.4}}, {{type: Normalize}}]")
LITES = {'efficientnet_lite0': 224, 'efficientnet_lite1': 240, 'efficientnet_lite2': 260}


def config(name):
    return os.path.join(RECIPES, name)


def make_data(work):
    """The example set, and the exact masks of its class images (the same
    generator call) under gt/<class>/ for scoring the labels."""
    from paddle_pssl.datasets.synthetic import make_own_data_example, make_source_set
    made = make_own_data_example(work, images_per_class=40, num_train=8, num_val=64, image_size=SIZE)
    source = make_source_set(os.path.join(work, 'gt_source'), len(made['class_names']), 40, SIZE, seed=0)
    for wnid, name in zip(source['class_names'], made['class_names']):
        mine = os.path.join(made['my_classes'], name)
        for file in os.listdir(mine):   # the same generator: the same images
            with open(os.path.join(mine, file), 'rb') as a, \
                    open(os.path.join(source['image_root'], 'train', wnid, file), 'rb') as b:
                assert a.read() == b.read(), file
        shutil.copytree(os.path.join(source['gt_root'], 'train', wnid), os.path.join(work, 'gt', name))
    shutil.rmtree(os.path.join(work, 'gt_source'))
    return made


class Steps:
    def __init__(self, work):
        self.work, self.cpu = work, {}
        path = os.path.join(work, 'steps.json')
        if os.path.isfile(path):
            with open(path) as f:
                self.cpu = json.load(f)

    def __call__(self, name, output, tool, *args):
        """Run ``tool`` unless ``output`` exists; keep its CPU seconds."""
        if os.path.exists(os.path.join(self.work, output)):
            print(f'{name}: done before ({self.cpu.get(name)} CPU s)', flush=True)
            return
        cpu = round(cpu_seconds(self.work, tool, *args), 1)
        path = os.path.join(self.work, 'steps.json')
        if os.path.isfile(path):   # another call may have added its steps meanwhile
            with open(path) as f:
                self.cpu.update(json.load(f))
        self.cpu[name] = cpu
        with open(path + '.tmp', 'w') as f:
            json.dump(self.cpu, f, indent=1)
        os.replace(path + '.tmp', path)
        print(f'{name}: {self.cpu[name]} CPU s', flush=True)


def labels(step, work, name, classifiers, root):
    """Labels of ``classifiers`` [(registry name, train_cls folder, input size)] into ``root``, scored."""
    entries = ', '.join(f'{{name: {n}, label: my_{n[-5:]}, weights: {d}/model.pdparams, num_classes: 3, '
                        f'input_size: {s}, output_stride: 16}}' for n, d, s in classifiers)
    step(name, f'{root}/manifest.json', 'generate_pssl.py', '-c', config('pseudo_labels.yml'), '--no_progress',
         '--opts', f'classifiers=[{entries}]', f'output.pssl_root={root}')
    step(f'{name} score', f'{root}.quality.json', 'eval_pseudo_labels.py', '--pssl_root', root,
         '--gt_root', 'gt', '--save_json', f'{root}.quality.json')
    with open(os.path.join(work, f'{root}.quality.json')) as f:
        q = json.load(f)
    return {'miou': q['miou'], 'fg_iou': q['fg_iou'], 'cpu_s': step.cpu[name], 'images': q['images']}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--work', default='/tmp/recipe_example')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    p.add_argument('--pretrain_iters', type=int, default=150)
    p.add_argument('--finetune_iters', type=int, default=100)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--ensemble', action='store_true', help='also EfficientNet-Lite1/2 and their ensemble labels')
    p.add_argument('--labels_only', action='store_true', help='stop after the labels and their scores')
    args = p.parse_args()
    w = args.work
    if not os.path.isdir(os.path.join(w, 'data')):
        make_data(w)
    step = Steps(w)
    step('1 classifier', 'output/recipe/classifier/model.pdparams', 'train_cls.py', '-c', config('classifier.yml'),
         '--save_dir', 'output/recipe/classifier')
    quality = {'efficientnet_lite0': labels(step, w, '3 labels', [('efficientnet_lite0', 'output/recipe/classifier',
                                                                   224)], 'output/recipe/labels')}
    if args.ensemble:
        for name in ('efficientnet_lite1', 'efficientnet_lite2'):
            step(f'1 classifier {name}', f'output/recipe/classifier_{name}/model.pdparams', 'train_cls.py',
                 '-c', config('classifier.yml'), '--save_dir', f'output/recipe/classifier_{name}',
                 '--opts', f'model.name={name}', f'model.input_size={LITES[name]}')
        for name in ('efficientnet_lite1', 'efficientnet_lite2'):
            quality[name] = labels(step, w, f'3 labels {name}', [(name, f'output/recipe/classifier_{name}',
                                                                  LITES[name])], f'output/recipe/labels_{name}')
        members = [('efficientnet_lite0', 'output/recipe/classifier', 224)] + [
            (n, f'output/recipe/classifier_{n}', LITES[n]) for n in ('efficientnet_lite1', 'efficientnet_lite2')]
        quality['ensemble lite0+1+2'] = labels(step, w, '3 labels ensemble', members, 'output/recipe/labels_ensemble')
    if args.labels_only:
        return print_labels(quality, step)
    os.makedirs(os.path.join(w, 'arms'), exist_ok=True)
    for seed in args.seeds:
        save = f'output/recipe/pretrain_seed{seed}'
        step(f'4 pre-training seed {seed}', f'{save}/iter_{args.pretrain_iters}/model.pdparams', 'train.py',
             '-c', config('pretrain.yml'), '--save_dir', save, '--seed', str(seed), '--iters',
             str(args.pretrain_iters), '--batch_size', '8', '--log_iters', '10', '--opts', PRETRAIN_CROP)
        os.makedirs(os.path.join(w, 'arms', f'pretrain_seed{seed}'), exist_ok=True)
        with open(os.path.join(w, 'arms', f'pretrain_seed{seed}', 'finetune_pssl_pretrain_seeds.yml'), 'w') as f:
            f.write(f"_base_: {config('finetune_pssl.yml')}\nmodel:\n"
                    f"  pretrained: {save}/iter_{args.pretrain_iters}/model.pdparams\n")
    shutil.copy(os.path.join(w, 'arms', f'pretrain_seed{args.seeds[0]}', 'finetune_pssl_pretrain_seeds.yml'),
                os.path.join(w, 'arms', 'finetune_pssl.yml'))
    seeds = [str(s) for s in args.seeds]
    cpu = cpu_seconds(w, 'compare_finetune.py', '--baseline', config('finetune_imagenet_lite0.yml'),
                      '--configs', config('finetune_classifier_backbone.yml'), 'arms/finetune_pssl.yml',
                      'arms/pretrain_seed{seed}/finetune_pssl_pretrain_seeds.yml', '--seeds', *seeds,
                      '--iters', str(args.finetune_iters), '--workers', str(args.workers),
                      '--save_dir', 'output/recipe/compare', '--opts', FINETUNE_CROP)
    print(f'5+6 compare: {cpu:.1f} CPU s in this call (runs reused from earlier calls not counted)')
    with open(os.path.join(w, 'output/recipe/compare/compare.md')) as f:
        print(f.read())
    with open(os.path.join(w, 'output/recipe/classifier/train_cls.json')) as f:
        cls = json.load(f)
    print(f"classifier: val acc {cls['val_acc']}, train acc (eval) {cls['train_acc_eval']}, {cls['iters']} iterations")
    print_labels(quality, step)


def print_labels(quality, step):
    print('| labels | images | label mIoU | fg IoU | CPU s |\n| --- | --- | --- | --- | --- |')
    for name, q in quality.items():
        print(f"| {name} | {q['images']} | {q['miou']:.3f} | {q['fg_iou']:.3f} | {q['cpu_s']} |")
    print('CPU s per step:', json.dumps(step.cpu))


if __name__ == '__main__':
    main()
