"""What the EfficientNet-Lite backbones cost: parameters and forward time per
image at output stride 32, 16 and 8 (dygraph, eval mode, no gradient, one
core), beside PaddleSeg's ResNet18_vd measured in the same run.

Times are CPU seconds (steadier than wall time on a shared machine), the best
of --repeats after one warm-up; the last column is the ratio to ResNet18_vd at
the same output stride.

    python benchmarks/bench_backbones.py [--size 224] [--batch 4] [--repeats 3]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402,F401  (zlib before paddle; registers the backbones)
import numpy as np  # noqa: E402
import paddle  # noqa: E402
from paddleseg.cvlibs import manager  # noqa: E402

from bench_output_stride import best  # noqa: E402  (best of n in CPU seconds, after a warm-up)

REFERENCE = 'ResNet18_vd'
NAMES = [REFERENCE, 'EfficientNetLite0', 'EfficientNetLite1', 'EfficientNetLite2']


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--repeats', type=int, default=3)
    args = p.parse_args()
    x = paddle.to_tensor(np.random.RandomState(0).standard_normal(
        (args.batch, 3, args.size, args.size)).astype('float32'))
    print(f'{args.size} px, batch {args.batch}, paddle {paddle.__version__}\n'
          '| backbone | parameters (M) | output stride | feature sides | ms per image | x ResNet18_vd |\n'
          '|---|---|---|---|---|---|')
    reference = {}
    for name in NAMES:
        for stride in (32, 16, 8):
            kwargs = {'output_stride': stride}
            if name != REFERENCE:
                kwargs['pretrained'] = 'random'   # the weights do not change the time
            model = manager.BACKBONES[name](**kwargs)
            model.eval()
            params = sum(int(np.prod(p.shape)) for p in model.parameters() if p.trainable) / 1e6
            with paddle.no_grad():
                sides = [f.shape[2] for f in model(x)]

                def forward():
                    model(x)
                seconds = best(forward, args.repeats) / args.batch
            if name == REFERENCE:
                reference[stride] = seconds
            print(f'| {name} | {params:.2f} | {stride} | {sides} | {seconds * 1000:.0f} '
                  f'| {seconds / reference[stride]:.2f} |')


if __name__ == '__main__':
    main()
