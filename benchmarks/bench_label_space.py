"""What the label space costs a PSSL pre-training step: the same model, loss
and batch with upstream's 1001 outputs, the compact K + 1 (K = 6, the
benchmark's source classes) and objectness's 2, measured in one run.

A step is forward, the class-weighted PSSLCrossEntropyLoss, backward and an
SGD update on random images and labels of the space (background, classes,
some ignore), in CPU seconds of this process (Paddle runs one math thread).
Settings alternate step by step after a warm-up, and the median over steps
is reported, with each space's ratio to upstream's.

    python benchmarks/bench_label_space.py [--model deeplabv3p_resnet18_vd] [--size 256] [--batch 4] [--steps 8]
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402,F401  (zlib before paddle)

import numpy as np  # noqa: E402
import paddle  # noqa: E402

from paddle_pssl.losses.weighted_ce import PSSLCrossEntropyLoss  # noqa: E402
from paddle_pssl.pseudo_labels.store import LabelSpace  # noqa: E402


def make_model(name, num_classes, output_stride):
    """The benchmark's DeepLabV3+-ResNet18_vd (configs/_base_/models, output
    stride 16), or upstream's PSPNet-ResNet50_vd (output stride 8)."""
    from paddleseg.models import DeepLabV3P, PSPNet
    from paddleseg.models.backbones import ResNet18_vd, ResNet50_vd
    if name == 'deeplabv3p_resnet18_vd':
        return DeepLabV3P(num_classes, ResNet18_vd(output_stride=output_stride), backbone_indices=[0, 3])
    if name == 'pspnet_resnet50_vd':
        return PSPNet(num_classes, ResNet50_vd(output_stride=output_stride), backbone_indices=[2, 3],
                      enable_auxiliary_loss=False)
    raise ValueError(name)


def setting(model_name, output_stride, space, size, batch, rng):
    paddle.seed(0)
    model = make_model(model_name, space.num_classes, output_stride)
    model.train()
    opt = paddle.optimizer.Momentum(0.01, parameters=model.parameters())
    loss_fn = PSSLCrossEntropyLoss(background_weight=0.1, ignore_index=space.ignore_index)
    images = paddle.to_tensor(rng.standard_normal((batch, 3, size, size)).astype('float32'))
    label = rng.integers(0, space.num_classes, (batch, size, size))
    label[:, :, : size // 8] = space.ignore_index          # padding
    label = paddle.to_tensor(label.astype('int64'))

    def step():
        start = time.process_time()
        loss = loss_fn(model(images)[0], label)
        loss.backward()
        opt.step()
        opt.clear_grad()
        return time.process_time() - start
    return step


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model', default='deeplabv3p_resnet18_vd',
                   choices=['deeplabv3p_resnet18_vd', 'pspnet_resnet50_vd'])
    p.add_argument('--output_stride', type=int, default=None,
                   help='default: 16 for DeepLabV3+ (the benchmark\'s), 8 for PSPNet (upstream\'s)')
    p.add_argument('--size', type=int, default=256)
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--steps', type=int, default=8)
    p.add_argument('--classes', type=int, default=6, help='K, the store\'s classes')
    args = p.parse_args()
    rng = np.random.default_rng(0)
    stride = args.output_stride or (16 if args.model.startswith('deeplab') else 8)
    spaces = {name: LabelSpace(name, args.classes) for name in ('upstream', 'compact', 'objectness')}
    steps = {name: setting(args.model, stride, space, args.size, args.batch, rng)
             for name, space in spaces.items()}
    for step in steps.values():     # warm-up: kernel choice and allocation
        step()
    times = {name: [] for name in steps}
    for _ in range(args.steps):
        for name, step in steps.items():
            times[name].append(step())
    print(f'{args.model} (output stride {stride}), {args.size} px, batch {args.batch}, K = {args.classes}, '
          f'Paddle {paddle.__version__}, '
          f'median CPU s per step over {args.steps} (alternating):')
    base = statistics.median(times['upstream'])
    for name, space in spaces.items():
        t = statistics.median(times[name])
        print(f'  {name:10s} {space.num_classes:5d} outputs  {t:7.3f} s  upstream / this = {base / t:5.2f}x')


if __name__ == '__main__':
    main()
