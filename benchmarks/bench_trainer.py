"""Time per training iteration: the project's trainer (paddle_pssl.core.train,
pixel weights routed to the loss) vs paddleseg.core.train, same config, data,
seed and batch, measured in one run; and the project's trainer with the
label store's per-sample checks (0/1 mask, finite confidence in [0, 1]) on
vs off.

Per-iteration time is (T(n_long) - T(n_short)) / (n_long - n_short) for each
trainer, so the fixed start-up and end costs (data loader start, FLOPs count,
PaddleSeg's 1 s sleep) cancel. Runs alternate between the trainers and the
median over repeats is reported.

    python benchmarks/bench_trainer.py [--model deeplabv3_resnet50_vd] [--crop 64]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402  (zlib before paddle)
import importlib  # noqa: E402

import paddle  # noqa: E402
import yaml  # noqa: E402
from paddleseg.cvlibs import SegBuilder  # noqa: E402
from paddleseg.utils import logger  # noqa: E402

from paddle_pssl.core import train as pssl_train  # noqa: E402
from paddle_pssl.datasets import toy  # noqa: E402
from paddle_pssl.config import load_config  # noqa: E402

seg_train = importlib.import_module('paddleseg.core.train').train
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(cfg_path, seed):
    paddle.seed(seed)
    builder = SegBuilder(load_config(cfg_path))
    return builder.model, builder.train_dataset, builder.optimizer, builder.loss


def timed_run(trainer, cfg_path, iters, batch_size, seed, save_dir):
    model, dataset, optimizer, losses = build(cfg_path, seed)
    start = time.perf_counter()
    # log_iters beyond iters: PaddleSeg 2.8's own loop fails at its first log
    # line on Paddle 2.6 (0-D losses), and logging is not what is measured.
    trainer(model, dataset, optimizer=optimizer, losses=losses, iters=iters,
            batch_size=batch_size, log_iters=iters + 1, save_interval=10 ** 9,
            save_dir=save_dir, num_workers=0)
    return time.perf_counter() - start


def without_label_checks(*args, **kwargs):
    """paddle_pssl.core.train with the store's label checks switched off."""
    from paddle_pssl.pseudo_labels import store
    saved = store.mask_problem, store.confidence_problem
    store.mask_problem = store.confidence_problem = lambda *a: None
    try:
        return pssl_train(*args, **kwargs)
    finally:
        store.mask_problem, store.confidence_problem = saved


def check_cost(work, repeats=200):
    """Seconds per sample of the two label checks on an ImageNet-sized
    (500x375) label with a confidence, read as the dataset reads it."""
    import numpy as np
    from paddle_pssl.pseudo_labels import store
    rng = np.random.default_rng(0)
    path = os.path.join(work, 'imagenet_size.JPEG_eiseg.npz')
    store.write_label(path, rng.random((375, 500)) > 0.5, rng.random((375, 500)))
    mask, confidence = store.read_label(path)
    start = time.perf_counter()
    for _ in range(repeats):
        store.mask_problem(mask)
        store.confidence_problem(confidence)
    return (time.perf_counter() - start) / repeats


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model', default='deeplabv3_resnet50_vd')
    p.add_argument('--crop', type=int, default=64)
    p.add_argument('--batch_size', type=int, default=2)
    p.add_argument('--short', type=int, default=2)
    p.add_argument('--long', type=int, default=8)
    p.add_argument('--repeats', type=int, default=3)
    args = p.parse_args()
    logger.logger.setLevel('WARNING') if hasattr(logger, 'logger') else None

    work = tempfile.mkdtemp(prefix='bench_trainer_')
    data = toy.make_toy_pssl(os.path.join(work, 'data'), num_classes=4, images_per_class=8,
                             image_size=(96, 128), seed=0)
    cfg_path = os.path.join(work, 'cfg.yml')
    with open(cfg_path, 'w') as f:
        yaml.safe_dump({
            '_base_': os.path.join(REPO, 'configs', 'pretrain', f'{args.model}_pssl.yml'),
            'train_dataset': {
                'imagenet_root': data['imagenet_root'], 'pssl_root': data['pssl_root'],
                'use_confidence': True,
                'transforms': [{'type': 'RandomPaddingCrop', 'crop_size': [args.crop, args.crop],
                                'label_padding_value': 1001}, {'type': 'Normalize'}]}}, f)

    trainers = {'paddleseg.core.train': seg_train, 'paddle_pssl.core.train': pssl_train,
                'paddle_pssl, no label checks': without_label_checks}
    per_iter = {name: [] for name in trainers}
    timed_run(pssl_train, cfg_path, 1, args.batch_size, 0, os.path.join(work, 'warm'))  # warm-up
    for r in range(args.repeats):
        order = list(trainers) if r % 2 == 0 else list(reversed(trainers))
        for name in order:
            t_short = timed_run(trainers[name], cfg_path, args.short, args.batch_size, r,
                                os.path.join(work, 's'))
            t_long = timed_run(trainers[name], cfg_path, args.long, args.batch_size, r,
                               os.path.join(work, 'l'))
            per_iter[name].append((t_long - t_short) / (args.long - args.short))
    med = {name: statistics.median(v) for name, v in per_iter.items()}
    print(f'model {args.model}, crop {args.crop}, batch {args.batch_size}, '
          f'{args.repeats} repeats, CPU threads as configured')
    for name, values in per_iter.items():
        print(f'  {name:30s} median {med[name]:.3f} s/iter  ({", ".join(f"{v:.3f}" for v in values)})')
    ratio = med['paddle_pssl.core.train'] / med['paddleseg.core.train']
    print(f'ratio project/paddleseg = {ratio:.3f}  (goal <= 1.05)')
    checks = med['paddle_pssl.core.train'] / med['paddle_pssl, no label checks']
    print(f'ratio label checks on/off = {checks:.3f}  (goal <= 1.02)')
    per_sample = check_cost(work)
    share = per_sample * args.batch_size / med['paddle_pssl.core.train']
    print(f'label checks on a 500x375 label with confidence: {per_sample * 1e6:.0f} us per sample, '
          f'{share:.4%} of this step at batch {args.batch_size}')


if __name__ == '__main__':
    main()
