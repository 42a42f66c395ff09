import os
import sys

import zlib  # noqa: F401  before paddle, see paddle_pssl/_zlib_first.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("FLAGS_call_stack_level", "0")

import pytest  # noqa: E402


@pytest.fixture(scope='session')
def toy_pssl(tmp_path_factory):
    """A small ImageNet-style set + label store with exact masks (3 classes x 4)."""
    from paddle_pssl.datasets import toy
    root = tmp_path_factory.mktemp('toy_pssl')
    return toy.make_toy_pssl(str(root), num_classes=3, images_per_class=4,
                             image_size=(72, 96), seed=0)


@pytest.fixture(scope='session')
def toy_target(tmp_path_factory):
    from paddle_pssl.datasets import toy
    root = tmp_path_factory.mktemp('toy_target')
    return toy.make_toy_segmentation(str(root), num_classes=3, num_train=4,
                                     num_val=2, image_size=(72, 96), seed=1)
