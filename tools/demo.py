"""The embedded default job: generate a small source set + label store and a
target set, pre-train DeepLabV3 on the pseudo labels (tools/train.py with
configs/demo/deeplabv3_toy_pssl.yml), fine-tune it with evaluation, and print
where the checkpoints and VisualDL logs are. No download, CPU, a few minutes.

    python tools/demo.py [--device cpu]     # writes output/demo
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402,F401  (first: zlib before paddle)
from paddle_pssl.datasets import toy  # noqa: E402
from paddle_pssl.tools_impl import train_main  # noqa: E402
from paddle_pssl.utils.cli import run  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cpu')
    args = p.parse_args(argv)
    os.chdir(REPO)   # the demo configs use paths relative to the repo
    out = 'output/demo'
    print('[demo] generating data under', os.path.join(out, 'data'))
    toy.make_toy_pssl(os.path.join(out, 'data', 'source'), num_classes=4,
                      images_per_class=8, image_size=(96, 128), seed=0)
    toy.make_toy_segmentation(os.path.join(out, 'data', 'target'), num_classes=3,
                              num_train=12, num_val=6, image_size=(96, 128), seed=1)
    print('[demo] PSSL pre-training (1001 classes, pixel-weighted loss)')
    train_main(['-c', 'configs/demo/deeplabv3_toy_pssl.yml', '--use_vdl', '--log_iters', '5',
                '--save_interval', '30', '--save_dir', f'{out}/pretrain', '--device', args.device])
    print('[demo] fine-tuning on the target set, head re-initialised by shape')
    train_main(['-c', 'configs/demo/deeplabv3_toy_finetune.yml', '--use_vdl', '--do_eval',
                '--log_iters', '5', '--save_interval', '20', '--save_dir', f'{out}/finetune',
                '--device', args.device])
    print(f'[demo] done: checkpoints in {out}/pretrain and {out}/finetune;\n'
          f'[demo] dashboards: visualdl --logdir {out} --port 8040')


if __name__ == '__main__':
    run(main)
