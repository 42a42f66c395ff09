"""Small seeded datasets made on the spot, with exact masks: real photos from
scikit-image as backgrounds, one drawn object per image.

``make_toy_pssl`` writes an ImageNet-style folder and a label store in
upstream's layout (masks are the exact object masks, confidence is high inside
and low near the contour); ``make_toy_segmentation`` writes a target set in
PaddleSeg's generic ``Dataset`` layout. Both are for smoke runs and tests; the
controlled benchmark builds its own source/target sets.
"""
import os

import cv2
import numpy as np

from ..pseudo_labels import store
from ..utils.io import atomic_write, atomic_write_text

_BACKGROUNDS = ('astronaut.png', 'chelsea.png', 'coffee.png', 'rocket.jpg',
                'motorcycle_left.png', 'hubble_deep_field.jpg', 'brick.png',
                'grass.png', 'gravel.png', 'camera.png')
_SHAPES = ('ellipse', 'rectangle', 'triangle', 'cross')


def background_photos():
    """The real photos shipped inside scikit-image, as uint8 BGR arrays."""
    import skimage
    data_dir = os.path.join(os.path.dirname(skimage.__file__), 'data')
    photos = []
    for name in _BACKGROUNDS:
        image = cv2.imread(os.path.join(data_dir, name), cv2.IMREAD_COLOR)
        if image is not None:
            photos.append(image)
    if not photos:
        raise RuntimeError(f'{data_dir}: no scikit-image photos found')
    return photos


def draw_object(shape, height, width, rng):
    """A filled shape mask (uint8 0/1) at a random place and scale."""
    mask = np.zeros((height, width), np.uint8)
    short = min(height, width)
    size = rng.uniform(0.25, 0.5) * short
    cy = rng.uniform(size * 0.6, height - size * 0.6)
    cx = rng.uniform(size * 0.6, width - size * 0.6)
    angle = rng.uniform(0, 180)
    if shape == 'ellipse':
        axes = (int(size * 0.6), int(size * rng.uniform(0.3, 0.6)))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, angle, 0, 360, 1, -1)
    else:
        if shape == 'rectangle':
            pts = np.array([[-1, -0.6], [1, -0.6], [1, 0.6], [-1, 0.6]])
        elif shape == 'triangle':
            pts = np.array([[0, -1], [0.95, 0.8], [-0.95, 0.8]])
        else:
            a, b = 1.0, 0.35
            pts = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b],
                            [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]])
        theta = np.deg2rad(angle)
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        pts = (pts @ rot.T) * size * 0.6 + [cx, cy]
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask


def render(photos, shape, colour, height, width, rng):
    """Background crop + one textured, tinted object. -> (BGR uint8, mask uint8)."""
    background = photos[rng.integers(len(photos))]
    image = cv2.resize(background, (width, height), interpolation=cv2.INTER_AREA)
    texture = cv2.resize(photos[rng.integers(len(photos))], (width, height),
                         interpolation=cv2.INTER_AREA).astype(np.float32)
    grey = texture.mean(axis=2, keepdims=True) / 255.0
    fill = np.clip(np.asarray(colour, np.float32) * (0.6 + 0.6 * grey), 0, 255)
    mask = draw_object(shape, height, width, rng)
    image = np.where(mask[..., None] == 1, fill, image).astype(np.uint8)
    return image, mask


def class_colours(num_classes, rng):
    hues = (np.arange(num_classes) * 180 // max(num_classes, 1)).astype(np.uint8)
    hsv = np.stack([hues, np.full_like(hues, 200), np.full_like(hues, 230)], -1)
    bgr = cv2.cvtColor(hsv[None], cv2.COLOR_HSV2BGR)[0]
    return [tuple(int(v) for v in c) for c in bgr]


def _write_jpeg(path, image):
    atomic_write(path, lambda tmp: cv2.imwrite(tmp, image), suffix='.JPEG')


def make_toy_pssl(root, num_classes=4, images_per_class=6, image_size=(96, 128),
                  seed=0):
    """Write ``<root>/imagenet/train/<wnid>/*.JPEG`` and ``<root>/pssl``.

    Returns ``{'imagenet_root', 'pssl_root', 'class_names'}``.
    """
    rng = np.random.default_rng(seed)
    photos = background_photos()
    height, width = image_size
    imagenet_root = os.path.join(root, 'imagenet')
    pssl_root = os.path.join(root, 'pssl')
    class_names = [f'n{90000000 + k:08d}' for k in range(num_classes)]
    colours = class_colours(num_classes, rng)
    lines = []
    for k, wnid in enumerate(class_names):
        for i in range(images_per_class):
            image, mask = render(photos, _SHAPES[k % len(_SHAPES)], colours[k],
                                 height, width, rng)
            rel = f'train/{wnid}/{wnid}_{i}.JPEG'
            _write_jpeg(os.path.join(imagenet_root, rel), image)
            inside = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
            outside = cv2.distanceTransform(1 - mask, cv2.DIST_L2, 3)
            confidence = np.clip((inside + outside) / 8.0, 0.2, 1.0)
            label_rel = store.label_relpath(rel)
            store.write_label(os.path.join(pssl_root, label_rel), mask, confidence)
            lines.append(label_rel)
    atomic_write_text(os.path.join(pssl_root, store.FILE_LIST),
                      ''.join(f'{line}\n' for line in lines))
    store.write_synsets(os.path.join(pssl_root, store.SYNSETS), class_names)
    return {'imagenet_root': imagenet_root, 'pssl_root': pssl_root,
            'class_names': class_names}


def make_toy_segmentation(root, num_classes=3, num_train=8, num_val=4,
                          image_size=(96, 128), seed=1):
    """A target set in PaddleSeg's ``Dataset`` layout: ``images/``, ``labels/``
    (PNG, 0 = background, 1..num_classes-1 = objects), ``train.txt``, ``val.txt``.
    Returns ``{'dataset_root', 'train_path', 'val_path', 'num_classes'}``."""
    rng = np.random.default_rng(seed)
    photos = background_photos()
    height, width = image_size
    colours = class_colours(num_classes, rng)
    splits = {'train': num_train, 'val': num_val}
    for split, count in splits.items():
        lines = []
        for i in range(count):
            k = 1 + i % (num_classes - 1)
            image, mask = render(photos, _SHAPES[(k + 1) % len(_SHAPES)], colours[k],
                                 height, width, rng)
            name = f'{split}_{i:04d}'
            img_rel, lbl_rel = f'images/{name}.jpg', f'labels/{name}.png'
            atomic_write(os.path.join(root, img_rel),
                         lambda tmp, im=image: cv2.imwrite(tmp, im), suffix='.jpg')
            label = (mask * k).astype(np.uint8)
            atomic_write(os.path.join(root, lbl_rel),
                         lambda tmp, lb=label: cv2.imwrite(tmp, lb), suffix='.png')
            lines.append(f'{img_rel} {lbl_rel}')
        atomic_write_text(os.path.join(root, f'{split}.txt'),
                          ''.join(f'{line}\n' for line in lines))
    return {'dataset_root': root, 'train_path': os.path.join(root, 'train.txt'),
            'val_path': os.path.join(root, 'val.txt'), 'num_classes': num_classes}
