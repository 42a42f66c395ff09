"""What each step of the own-data recipe (docs/own_data.md) costs, in CPU
seconds, at the recipe's own settings (configs/recipes/, images of --size px),
and what that projects to for 10k and 100k classification images.

Each step runs twice through its command-line tool, short and long (more
iterations, or more images for the labels); the difference gives the cost per
iteration (per image for labels) and the rest is the fixed start-up cost
(imports, model building, loading). Projections are start-up + units x rate,
with the recipe's schedules scaled to the image count (the classifier's
10 epochs at batch 32, 30 for the ResNet18_vd variant; pre-training 5 epochs at
batch 12); fine-tuning does not grow with the classification set. CPU seconds
of one process on one core (Paddle computes on one thread here), from os.wait4.

    python benchmarks/bench_recipe.py [--size 224] [--work /tmp/bench_recipe]
    python benchmarks/bench_recipe.py --variant resnet18_vd   # the ResNet18_vd variant
    python benchmarks/bench_recipe.py --head_cost   # the 1001-class head against a K+1-class one

``--head_cost``: one training step (forward, loss, backward, SGD) of the
recipe's DeepLabV3+ ResNet18_vd at batch 2 on 256 px crops with 1001 outputs
and with 4, CPU seconds, best of 3 after a warm-up, in one process.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RECIPES = os.path.join(ROOT, 'configs', 'recipes')
COUNTS = (10_000, 100_000)


def cpu_seconds(cwd, tool, *args):
    """Run tools/<tool> from ``cwd``; -> CPU seconds of its process."""
    with open(os.path.join(cwd, 'bench.log'), 'a') as log:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'tools', tool), *args], cwd=cwd,
                                stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONPATH=ROOT))
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f'error: {tool} {" ".join(args)} failed; see {cwd}/bench.log')
    return usage.ru_utime + usage.ru_stime


def rate(short, long):
    """((units, seconds), (units, seconds)) -> (start-up s, s per unit)."""
    per = (long[1] - short[1]) / (long[0] - short[0])
    return short[1] - short[0] * per, per


def head_cost(batch=2, crop=256, repeats=3):
    import time

    import numpy as np
    import paddle_pssl  # noqa: F401  (zlib before paddle)
    import paddle
    import paddle.nn.functional as F
    from paddleseg.models import DeepLabV3P
    from paddleseg.models.backbones import ResNet18_vd
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.standard_normal((batch, 3, crop, crop)).astype('float32'))
    for classes in (1001, 4):
        paddle.seed(0)
        model = DeepLabV3P(classes, ResNet18_vd(output_stride=16), backbone_indices=[0, 3])
        opt = paddle.optimizer.SGD(0.01, parameters=model.parameters())
        y = paddle.to_tensor(rng.integers(0, classes, (batch, crop, crop)).astype('int64'))
        times = []
        for _ in range(repeats + 1):
            start = time.process_time()
            loss = F.cross_entropy(model(x)[0], y, axis=1)
            loss.backward()
            opt.step()
            opt.clear_grad()
            times.append(time.process_time() - start)
        head = model.head.decoder.conv.weight.shape
        print(f'{classes} outputs: {min(times[1:]):.2f} CPU s per step (batch {batch}, {crop} px), '
              f'output layer {head}, logits {batch}x{classes}x{crop}x{crop} float32 = '
              f'{batch * classes * crop * crop * 4 / 2 ** 30:.2f} GiB')


VARIANTS = {   # config prefix, classifier name, its label entry
    'default': ('', 'efficientnet_lite0', 'EfficientNet-Lite0'),
    'resnet18_vd': ('resnet18_vd/', 'ResNet18_vd', 'ResNet18_vd'),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--head_cost', action='store_true')
    p.add_argument('--variant', default='default', choices=sorted(VARIANTS),
                   help='the default recipe (EfficientNet-Lite0) or the ResNet18_vd variant')
    p.add_argument('--size', type=int, default=224, help='side of the generated images')
    p.add_argument('--work', default='/tmp/bench_recipe')
    p.add_argument('--short', type=int, default=1, help='iterations of the short runs')
    p.add_argument('--long', type=int, default=4, help='iterations of the long runs')
    args = p.parse_args()
    if args.head_cost:
        return head_cost()
    from paddle_pssl.datasets.synthetic import make_own_data_example
    if os.path.isdir(args.work):
        shutil.rmtree(args.work)
    os.makedirs(args.work)
    # 3 classes x 16: 45 train images after the 10% hold-out, more than one batch of 32
    made = make_own_data_example(args.work, images_per_class=16, num_train=16, num_val=8,
                                 image_size=args.size)
    prefix, net, title = VARIANTS[args.variant]
    cfg = {name: os.path.join(RECIPES, f'{prefix}{name}.yml')
           for name in ('classifier', 'pseudo_labels', 'pretrain', 'finetune_pssl')}
    cfg['finetune_imagenet_lite0'] = os.path.join(RECIPES, 'finetune_imagenet_lite0.yml')
    w, short, long = args.work, args.short, args.long
    out_root = 'output/recipe_resnet18_vd' if prefix else 'output/recipe'
    rates = {}

    def train_cls(iters):
        return cpu_seconds(w, 'train_cls.py', '-c', cfg['classifier'], '--save_dir', f'output/cls{iters}',
                           '--iters', str(iters))
    rates[f'1 classifier, {title} (per iteration, batch 32)'] = rate((short, train_cls(short)),
                                                                      (long, train_cls(long)))
    shutil.copy(os.path.join(w, f'output/cls{long}/model.pdparams'), os.path.join(w, 'weights.pdparams'))
    os.makedirs(os.path.join(w, out_root, 'classifier'), exist_ok=True)
    if prefix:
        cpu_seconds(w, 'convert_cls_to_seg.py', '--weights', 'weights.pdparams', '--backbone', 'ResNet18_vd',
                    '--out', f'{out_root}/classifier/backbone.pdparams')
    else:   # the backbone loads the classifier's file by name
        shutil.copy(os.path.join(w, 'weights.pdparams'), os.path.join(w, out_root, 'classifier/model.pdparams'))

    def labels(count):
        return cpu_seconds(w, 'generate_pssl.py', '-c', cfg['pseudo_labels'], '--no_progress',
                           '--max_images', str(count), '--opts', 'output.batch_size=4',
                           f'output.pssl_root=output/labels{count}',
                           f'classifiers=[{{name: {net}, label: mine, weights: weights.pdparams, '
                           'num_classes: 3, input_size: 224, output_stride: 16}]')
    rates['3 labels, the default settings (per image)'] = rate((4, labels(4)), (16, labels(16)))
    shutil.copytree(os.path.join(w, 'output/labels16'), os.path.join(w, out_root, 'labels'))

    def train(config, iters, name, *opts):
        return cpu_seconds(w, 'train.py', '-c', cfg[config], '--iters', str(iters), '--save_dir',
                           f'output/{name}{iters}', *(['--opts', *opts] if opts else []))
    rates[f'4 pre-training, DeepLabV3+ {title}, compact (per iteration, batch 12)'] = rate(
        (short, train('pretrain', short, 'pre')), (long, train('pretrain', long, 'pre')))
    pre = f'model.pretrained=output/pre{long}/iter_{long}/model.pdparams'
    rates[f'5 fine-tuning, DeepLabV3+ {title} (per iteration, batch 8)'] = rate(
        (short, train('finetune_pssl', short, 'ft', pre)), (long, train('finetune_pssl', long, 'ft', pre)))
    if prefix:
        rates['5 baseline, EfficientNet-Lite0 ImageNet (per iteration, batch 8)'] = rate(
            (short, train('finetune_imagenet_lite0', short, 'lite')),
            (long, train('finetune_imagenet_lite0', long, 'lite')))

    def units(step, n):
        """Iterations (images for labels) of ``step`` for n classification images."""
        if step.startswith('1 classifier'):
            epochs = 30 if prefix else 10   # the classifier configs' epochs
            return math.ceil(epochs * 0.9 * n / 32)
        if step.startswith('3 labels'):
            return n
        if step.startswith('4 pre-training'):
            return math.ceil(5 * n / 12)
        return 2000   # my_seg.yml's iters, whatever n is

    print(f'{args.variant}: {args.size} px images, {made["class_names"]}; CPU seconds, one process, one core')
    print('| step | start-up s | s per unit | ' + ' | '.join(
        f'{n // 1000}k images: units, hours (projected)' for n in COUNTS) + ' |')
    print('|---|---|---|' + '---|' * len(COUNTS))
    out = {}
    for step, (startup, per) in rates.items():
        cells = [(units(step, n), (startup + units(step, n) * per) / 3600) for n in COUNTS]
        out[step] = {'startup_s': startup, 'per_unit_s': per, 'projected_h': {n: c[1] for n, c in zip(COUNTS, cells)}}
        print(f'| {step} | {startup:.1f} | {per:.2f} | ' + ' | '.join(
            f'{u}, {h:.1f}' for u, h in cells) + ' |')
    with open(os.path.join(w, 'bench_recipe.json'), 'w') as f:
        json.dump(out, f, indent=1)


if __name__ == '__main__':
    main()
