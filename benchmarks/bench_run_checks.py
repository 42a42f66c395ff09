"""What the run checks of issue 25 cost, against one training step, measured
in one run.

Per step nothing is added: the label check of each sample (one max(), see
benchmarks/bench_trainer.py) is as before. Once per run:

- claiming save_dir (refuse an earlier run, take the lock, release it);
- the config's section checks (every key of every mapping, misplaced keys);
- the target mask scan before training: masks are read until every class id
  has been seen (a few), or all of them when a class is missing; reported
  per mask read, and for both cases on the generated set;
- strict loading of --model_path (val/predict/export) against PaddleSeg's
  load by shape;
- reading a resume checkpoint's model.pdopt once more (the unreadable-file check).

One training step is (T(long) - T(short)) / (long - short) of the project's
trainer (paddle_pssl.core.train) on the same set, so start-up cancels.

    python benchmarks/bench_run_checks.py [--crop 256] [--batch 2] [--masks 64]
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402  (zlib before paddle)

import paddle  # noqa: E402
import yaml  # noqa: E402
from paddleseg.utils import logger  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_config(root, data, crop, num_classes):
    cfg = {'_base_': os.path.join(REPO, 'configs', 'benchmark', 'finetune.yml'),
           'model': {'num_classes': num_classes},
           'train_dataset': {'dataset_root': data['dataset_root'], 'train_path': data['train_path'],
                             'num_classes': num_classes,
                             'transforms': [{'type': 'RandomPaddingCrop', 'crop_size': [crop, crop]},
                                            {'type': 'RandomHorizontalFlip'}, {'type': 'Normalize'}]},
           'val_dataset': {'dataset_root': data['dataset_root'], 'val_path': data['val_path'],
                           'num_classes': num_classes}}
    path = os.path.join(root, f'cfg_{num_classes}.yml')
    with open(path, 'w') as f:
        yaml.safe_dump(cfg, f)
    return path


def step_seconds(cfg_path, batch, short, long, work):
    from paddle_pssl.config import load_config
    from paddle_pssl.config.paddleseg import seg_builder
    from paddle_pssl.core import train

    def run(iters):
        paddle.seed(0)
        builder = seg_builder(load_config(cfg_path))
        start = time.perf_counter()
        train(builder.model, builder.train_dataset, optimizer=builder.optimizer, losses=builder.loss,
              iters=iters, batch_size=batch, log_iters=iters + 1, save_interval=10 ** 9,
              save_dir=tempfile.mkdtemp(dir=work), num_workers=0)
        return time.perf_counter() - start
    return (run(long) - run(short)) / (long - short)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--crop', type=int, default=256)
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--masks', type=int, default=64, help='training masks of the generated set')
    p.add_argument('--size', type=int, nargs=2, default=[375, 500], help='mask height width (VOC-like)')
    p.add_argument('--repeats', type=int, default=5)
    args = p.parse_args()
    # the checks' own log lines are not what is measured
    logger.info = logger.warning = lambda *a, **k: None
    from paddle_pssl.config import load_config
    from paddle_pssl.config.paddleseg import check_config_dict, seg_builder
    from paddle_pssl.datasets import toy
    from paddle_pssl.datasets.target_labels import scan_classes
    from paddle_pssl.utils.checkpoint import Checkpoints, load_trained
    from paddle_pssl.utils.safe_load import safe_load
    from paddle_pssl.utils.save_dir import claim_save_dir
    from paddleseg.utils import utils

    work = tempfile.mkdtemp(prefix='bench_run_checks_')
    data = toy.make_toy_segmentation(os.path.join(work, 'target'), num_classes=4, num_train=args.masks,
                                     num_val=4, image_size=tuple(args.size), seed=0)
    cfg_path = write_config(work, data, args.crop, 4)
    step = step_seconds(cfg_path, args.batch, 2, 6, work)

    rows = []
    save_dir = os.path.join(work, 'claimed')

    def claim():
        with claim_save_dir(save_dir):
            pass
    rows.append(('claim save_dir (lock, earlier-run check, release)', median_seconds(claim, args.repeats)))
    dic = load_config(cfg_path).dic
    rows.append(('config section and key checks', median_seconds(lambda: check_config_dict(dic, cfg_path),
                                                                 args.repeats)))
    builder = seg_builder(load_config(cfg_path))
    train_set = builder.train_dataset
    found = scan_classes([train_set])
    early = median_seconds(lambda: scan_classes([train_set]), args.repeats)
    rows.append((f"mask scan, every class present ({found['read']} of {found['files']} masks read)", early))
    train_set.num_classes = 5    # class 4 in no mask: every mask is read
    full = median_seconds(lambda: scan_classes([train_set]), args.repeats)
    train_set.num_classes = 4
    rows.append((f'mask scan, a class missing (all {args.masks} masks read)', full))
    rows.append((f"  per mask read ({args.size[0]}x{args.size[1]})", full / args.masks))

    model = builder.model
    weights = os.path.join(work, 'model.pdparams')
    paddle.save(model.state_dict(), weights)
    strict = median_seconds(lambda: load_trained(model, weights), args.repeats)
    by_shape = median_seconds(lambda: utils.load_entire_model(model, weights), args.repeats)
    rows.append(('--model_path strict load, instead of PaddleSeg\'s by shape '
                 f'({by_shape * 1000:.1f} ms)', strict))
    # one step, so that the optimizer state holds its momentum accumulators
    sum(p.sum() for p in model.parameters() if not p.stop_gradient).backward()
    builder.optimizer.step()
    ckpt = Checkpoints(os.path.join(work, 'ckpt')).save(1, model.state_dict(),
                                                        builder.optimizer.state_dict())
    rows.append(('resume: model.pdopt read once more',
                 median_seconds(lambda: safe_load(os.path.join(ckpt, 'model.pdopt')), args.repeats)))

    print(f'\nOne training step (DeepLabV3+ ResNet18_vd, crop {args.crop}, batch {args.batch}, '
          f'paddle {paddle.__version__}): {step:.3f} s')
    print('| check (once per run) | ms | share of one step |')
    print('| --- | --- | --- |')
    for name, seconds in rows:
        print(f'| {name} | {seconds * 1000:.2f} | {100 * seconds / step:.3f} % |')
    per_mask = full / args.masks
    print(f'A scan of every mask (only when a class is missing) costs one training step per '
          f'{step / per_mask:.0f} masks.')
    print('Per step: nothing added (the per-sample label check is unchanged).')
    shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
