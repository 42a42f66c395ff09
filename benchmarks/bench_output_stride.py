"""What a finer last feature map costs: the benchmark's source classifiers at
output stride 32, 16 and 8 (dilated, paddle_pssl.classifiers.output_stride),
64-px inputs, one core.

Per classifier and stride: the last map's side, a training step (forward +
backward, batch 32, dygraph) and an input-gradient pass as SmoothGrad's
(batch 8), each the best of --repeats in CPU seconds, and the ratio to
stride 32 measured in the same run.

    python benchmarks/bench_output_stride.py [--repeats 3]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402,F401  (zlib before paddle)
import numpy as np  # noqa: E402
import paddle  # noqa: E402

from paddle_pssl.classifiers import build_classifier  # noqa: E402

NAMES = ['ResNet18_vd', 'MobileNetV3_small_x1_0']


def best(fn, repeats):
    fn()   # warm-up
    times = []
    for _ in range(repeats):
        start = time.process_time()   # CPU seconds: steadier than wall time on a shared machine
        fn()
        times.append(time.process_time() - start)
    return min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--size', type=int, default=64)
    args = p.parse_args()
    rng = np.random.RandomState(0)
    x_train = paddle.to_tensor(rng.standard_normal((32, 3, args.size, args.size)).astype('float32'))
    x_grad = paddle.to_tensor(rng.standard_normal((8, 3, args.size, args.size)).astype('float32'))
    print(f'| classifier | output stride | last map | train step b32 (CPU s) | x stride 32 '
          f'| input gradient b8 (CPU s) | x stride 32 |\n|---|---|---|---|---|---|---|')
    for name in NAMES:
        base = None
        for stride in (32, 16, 8):
            paddle.seed(0)
            clf = build_classifier(name, weights='random', num_classes=6, input_size=args.size,
                                   output_stride=stride)
            model = clf.model
            model.train()
            opt = paddle.optimizer.Momentum(0.01, parameters=model.parameters())

            def step():
                loss = model(x_train).mean()
                loss.backward()
                opt.step()
                opt.clear_grad()

            train = best(step, args.repeats)
            model.eval()

            def grad():
                x = x_grad.clone()
                x.stop_gradient = False
                feats, logits = clf.features_and_logits(x)
                paddle.grad(logits[:, 0].sum(), x)

            gradient = best(grad, args.repeats)
            with paddle.no_grad():
                side = clf.features_and_logits(x_grad[:1])[0].shape[2]
            base = base or (train, gradient)
            print(f'| {name} | {stride} | {side}x{side} | {train:.3f} | {train / base[0]:.2f} '
                  f'| {gradient:.3f} | {gradient / base[1]:.2f} |', flush=True)


if __name__ == '__main__':
    main()
