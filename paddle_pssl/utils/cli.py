"""Shared pieces of the command-line tools (tools/*.py stay thin)."""
import argparse
import os
import sys
import traceback

from .errors import PSSLError, one_line


def add_config_args(parser, opts_example):
    """-c/--config (PaddleClas habit) and --config (PaddleSeg), plus --opts
    whose help shows ``opts_example``: keys of the tool's own config kind
    (tests/test_recipe.py runs every tool's example through its config path)."""
    parser.add_argument('-c', '--config', dest='cfg', required=True,
                        help='path to the YAML config')
    parser.add_argument('-o', '--opts', nargs='+', default=None,
                        help=f'override config keys: key=value ..., e.g. {opts_example}')
    parser.add_argument('--device', default='cpu',
                        choices=['cpu', 'gpu', 'xpu', 'npu', 'mlu'],
                        help='device to run on (default: cpu)')
    return parser


def add_save_dir_args(parser):
    """--overwrite and --break_lock of the training tools (see
    :mod:`paddle_pssl.utils.save_dir`)."""
    parser.add_argument('--overwrite', action='store_true',
                        help='delete the earlier run in save_dir (its iter_<n> checkpoints, best '
                             'model, VisualDL records) and start afresh; without it such a '
                             'save_dir is refused')
    parser.add_argument('--break_lock', action='store_true',
                        help="take over save_dir's lock (<save_dir>/.run.lock) held by a run on "
                             'another host; a lock of this host whose process is gone is taken '
                             'over without it')
    return parser


def run(main, argv=None):
    """Run ``main(argv)``; a bad-input error prints one line and exits 2.

    Set PSSL_DEBUG=1 to see the full traceback instead.
    """
    try:
        return main(argv)
    except PSSLError as e:
        if os.environ.get('PSSL_DEBUG'):
            traceback.print_exc()
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    except RuntimeError as e:
        # PaddleSeg's builder wraps constructor errors (ours included) in a
        # multi-line RuntimeError; keep its last line.
        if os.environ.get('PSSL_DEBUG') or 'Tried to create' not in str(e) \
                and 'was not found' not in str(e):
            raise
        print(f'error: {one_line(e)}', file=sys.stderr)
        sys.exit(2)


def setup_runtime(device, seed=None):
    """Device and seeds, as PaddleSeg's tools set them."""
    import random

    import numpy as np
    import paddle

    if device == 'gpu' and not paddle.is_compiled_with_cuda():
        raise PSSLError('--device gpu: this paddlepaddle build has no CUDA '
                        '(install paddlepaddle-gpu==2.6.2)')
    paddle.set_device(device)
    if seed is not None:
        paddle.seed(seed)
        np.random.seed(seed)
        random.seed(seed)


def ArgumentParser(description):
    return argparse.ArgumentParser(description=description)
