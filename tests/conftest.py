import os
import sys

import zlib  # noqa: F401  before paddle, see paddle_pssl/_zlib_first.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("FLAGS_call_stack_level", "0")

import pytest  # noqa: E402


def write_photo_source(root, images):
    """Write ``(class_id, name, rgb)`` images as ``<root>/train/<wnid>/<wnid>_<name>.JPEG``
    with 1000 placeholder wnids; -> {'image_root', 'synsets'} for the generator."""
    import cv2
    names = [f'n{i:08d}' for i in range(1000)]
    for class_id, name, rgb in images:
        path = root / 'train' / names[class_id] / f'{names[class_id]}_{name}.JPEG'
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    synsets = root / 'synsets.txt'
    synsets.write_text(''.join(f'{n}\n' for n in names))
    return {'image_root': str(root), 'synsets': str(synsets)}


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
