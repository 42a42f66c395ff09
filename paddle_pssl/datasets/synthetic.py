"""The controlled testbed: a source classification set and a target
segmentation set with exact masks, drawn on real photos from scikit-image.

An object class is a (shape, texture, hue) triple; every image varies the
object's scale, aspect, rotation, position, hue within the class's band and
brightness, and the background photo and crop. Source images hold one object
of one class; their exact masks go to ``gt/`` for evaluating pseudo labels
only, never to training. Target images hold 1-3 objects of the target classes
(different shapes from the source by default), label 0 = background.
Everything is drawn from one seeded generator: same seed, same files.
"""
import os

import cv2
import numpy as np

from ..pseudo_labels import store
from ..utils.io import atomic_write, atomic_write_text
from .toy import background_photos

SHAPES = ('ellipse', 'rectangle', 'triangle', 'cross', 'star', 'ring', 'diamond', 'crescent',
          'pentagon', 'arrow', 'hexagon', 'heart')
TEXTURES = ('solid', 'stripes', 'checker', 'dots', 'photo')


def _polygon(shape):
    if shape == 'rectangle':
        return np.array([[-1, -0.6], [1, -0.6], [1, 0.6], [-1, 0.6]], float)
    if shape == 'triangle':
        return np.array([[0, -1], [0.95, 0.8], [-0.95, 0.8]], float)
    if shape == 'diamond':
        return np.array([[0, -1], [0.65, 0], [0, 1], [-0.65, 0]], float)
    if shape == 'cross':
        a, b = 1.0, 0.33
        return np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a],
                         [-b, b], [-a, b], [-a, -b], [-b, -b]], float)
    if shape in ('star', 'pentagon', 'hexagon'):
        n = {'star': 10, 'pentagon': 5, 'hexagon': 6}[shape]
        angles = -np.pi / 2 + np.arange(n) * 2 * np.pi / n
        radius = np.where(np.arange(n) % 2 == 0, 1.0, 0.45) if shape == 'star' else np.ones(n)
        return np.stack([radius * np.cos(angles), radius * np.sin(angles)], 1)
    if shape == 'arrow':
        return np.array([[-1, -0.25], [0.2, -0.25], [0.2, -0.6], [1, 0], [0.2, 0.6], [0.2, 0.25],
                         [-1, 0.25]], float)
    if shape == 'heart':
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.stack([x, y], 1) / 17.0
    raise ValueError(shape)


def shape_mask(shape, height, width, center, size, aspect, angle):
    """Filled mask (uint8 0/1) of one shape; size = half-extent in pixels."""
    mask = np.zeros((height, width), np.uint8)
    cx, cy = center
    sx, sy = size * aspect, size / aspect
    if shape in ('ellipse', 'ring'):
        cv2.ellipse(mask, (int(round(cx)), int(round(cy))), (max(int(sx), 1), max(int(sy * 0.75), 1)),
                    angle, 0, 360, 1, -1)
        if shape == 'ring':
            cv2.ellipse(mask, (int(round(cx)), int(round(cy))), (max(int(sx * 0.5), 1),
                        max(int(sy * 0.37), 1)), angle, 0, 360, 0, -1)
        return mask
    if shape == 'crescent':
        cv2.circle(mask, (int(round(cx)), int(round(cy))), max(int(size), 2), 1, -1)
        theta = np.deg2rad(angle)
        off = (cx + 0.45 * size * np.cos(theta), cy + 0.45 * size * np.sin(theta))
        cv2.circle(mask, (int(round(off[0])), int(round(off[1]))), max(int(size * 0.85), 1), 0, -1)
        return mask
    theta = np.deg2rad(angle)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    points = (_polygon(shape) * [sx, sy]) @ rot.T + [cx, cy]
    cv2.fillPoly(mask, [np.round(points * 4).astype(np.int32)], 1, shift=2)
    return mask


def texture(kind, height, width, hue, rng, photos):
    """An RGB float32 fill for the object, around the class hue."""
    h = (hue + rng.uniform(-6, 6)) % 180
    value = rng.uniform(170, 250)
    base = cv2.cvtColor(np.uint8([[[h, rng.uniform(150, 230), value]]]), cv2.COLOR_HSV2RGB)[0, 0]
    base = base.astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(4, 9)
    phase = rng.uniform(0, period)
    if kind == 'solid':
        factor = np.ones((height, width), np.float32)
    elif kind == 'stripes':
        direction = rng.uniform(0, np.pi)
        u = xx * np.cos(direction) + yy * np.sin(direction)
        factor = np.where(((u + phase) // (period / 2)) % 2 == 0, 1.0, 0.45)
    elif kind == 'checker':
        factor = np.where((((xx + phase) // period) + ((yy + phase) // period)) % 2 == 0, 1.0, 0.45)
    elif kind == 'dots':
        factor = np.where(((xx + phase) % period - period / 2) ** 2 + ((yy + phase) % period - period / 2) ** 2
                          < (period / 3.5) ** 2, 0.4, 1.0)
    else:   # grey-level detail from another photo
        photo = photos[rng.integers(len(photos))]
        grey = cv2.cvtColor(cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA),
                            cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0
        factor = 0.45 + 0.75 * grey
    return np.clip(base[None, None, :] * factor[..., None].astype(np.float32), 0, 255)


def background(photos, height, width, rng):
    """A random crop of a random photo, resized, as RGB float32."""
    photo = photos[rng.integers(len(photos))]
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.35, 1.0)
    ch, cw = max(int(ph * scale), 8), max(int(pw * scale), 8)
    y0, x0 = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
    crop = photo[y0:y0 + ch, x0:x0 + cw]
    if rng.uniform() < 0.5:
        crop = crop[:, ::-1]
    return cv2.cvtColor(cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_BGR2RGB).astype(np.float32)


def class_table(num_classes, rng, shapes, hue_offset=0.0):
    """(shape, texture, hue) per class: shapes cycle, textures and hues spread."""
    table = []
    for k in range(num_classes):
        table.append((shapes[k % len(shapes)], TEXTURES[(k * 2 + k // len(shapes)) % len(TEXTURES)],
                      float((hue_offset + k * 180.0 / num_classes) % 180)))
    return table


def draw(image, classes, class_index, height, width, rng, photos, min_scale, max_scale):
    """Paint one object of ``classes[class_index]`` on ``image``; -> its mask."""
    shape, kind, hue = classes[class_index]
    short = min(height, width)
    size = rng.uniform(min_scale, max_scale) * short / 2
    margin = size * 0.7
    center = (rng.uniform(margin, width - margin), rng.uniform(margin, height - margin))
    mask = shape_mask(shape, height, width, center, size, rng.uniform(0.75, 1.33), rng.uniform(0, 360))
    if mask.sum() < 6:
        mask = shape_mask(shape, height, width, (width / 2, height / 2), short / 4, 1.0, 0.0)
    fill = texture(kind, height, width, hue, rng, photos)
    image[mask == 1] = fill[mask == 1]
    return mask


def _png(path, array):
    atomic_write(path, lambda tmp: cv2.imwrite(tmp, array), suffix='.png')


def make_source_set(root, num_classes=6, images_per_class=50, image_size=64, seed=0,
                    min_scale=0.35, max_scale=0.8):
    """Classification set in ImageNet's layout with its exact masks kept aside.

    ``<root>/images/train/<wnid>/<wnid>_<i>.png``, ``<root>/gt/train/<wnid>/<wnid>_<i>.png``
    (0/255 object masks, for evaluation only), ``<root>/synsets.txt``.
    """
    rng = np.random.default_rng(seed)
    photos = background_photos()
    classes = class_table(num_classes, rng, SHAPES[:8])
    names = [f'n{90000000 + k:08d}' for k in range(num_classes)]
    for k, name in enumerate(names):
        for i in range(images_per_class):
            image = background(photos, image_size, image_size, rng)
            mask = draw(image, classes, k, image_size, image_size, rng, photos, min_scale, max_scale)
            rel = f'train/{name}/{name}_{i}'
            _png(os.path.join(root, 'images', rel + '.png'),
                 cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_RGB2BGR))
            _png(os.path.join(root, 'gt', rel + '.png'), mask * 255)
    store.write_synsets(os.path.join(root, 'synsets.txt'), names)
    return {'image_root': os.path.join(root, 'images'), 'gt_root': os.path.join(root, 'gt'),
            'synsets': os.path.join(root, 'synsets.txt'), 'class_names': names,
            'classes': classes}


def make_target_set(root, num_classes=3, num_train=24, num_test=60, image_size=64, seed=1,
                    shapes=SHAPES[8:], min_scale=0.3, max_scale=0.7, max_objects=3, train_subsets=()):
    """Segmentation set in PaddleSeg's ``Dataset`` layout: ``images/``,
    ``labels/`` (0 = background, 1..num_classes = objects), ``train.txt``,
    ``test.txt``. Returns the paths and ``num_classes`` (+1 for background).

    The test split is drawn from its own generator, so it stays the same
    whatever ``num_train`` is. ``train_subsets``: sizes n of nested training
    subsets (the first n training images), listed in ``train_n<n>.txt``."""
    classes = class_table(num_classes, np.random.default_rng(seed), shapes, hue_offset=15.0)
    photos = background_photos()
    out = {'dataset_root': root, 'train_path': os.path.join(root, 'train.txt'),
           'test_path': os.path.join(root, 'test.txt'), 'num_classes': num_classes + 1,
           'classes': classes, 'train_subsets': {}}
    for split, count, rng in (('train', num_train, np.random.default_rng([seed, 1])),
                              ('test', num_test, np.random.default_rng([seed, 2]))):
        lines = []
        for i in range(count):
            image = background(photos, image_size, image_size, rng)
            label = np.zeros((image_size, image_size), np.uint8)
            for _ in range(rng.integers(1, max_objects + 1)):
                k = int(rng.integers(num_classes))
                mask = draw(image, classes, k, image_size, image_size, rng, photos, min_scale, max_scale)
                label[mask == 1] = k + 1
            name = f'{split}_{i:04d}'
            _png(os.path.join(root, 'images', name + '.png'),
                 cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_RGB2BGR))
            _png(os.path.join(root, 'labels', name + '.png'), label)
            lines.append(f'images/{name}.png labels/{name}.png')
        atomic_write_text(os.path.join(root, f'{split}.txt'), ''.join(f'{x}\n' for x in lines))
    out['train_subsets'] = write_train_subsets(out['train_path'], train_subsets, root)
    return out


def write_train_subsets(train_path, sizes, folder):
    """``folder/train_n<n>.txt``: the first n lines of the list ``train_path``
    for each n of ``sizes`` (nested subsets; lines stay relative to the
    dataset root, so the lists may live outside it). -> {n: path}"""
    with open(train_path) as f:
        lines = f.readlines()
    out = {}
    for n in sizes:
        if not 1 <= n <= len(lines):
            raise ValueError(f'train subset of {n} images from {len(lines)}')
        out[n] = os.path.join(folder, f'train_n{n}.txt')
        atomic_write_text(out[n], ''.join(lines[:n]))
    return out


def make_own_data_example(top, class_names=('mug', 'spoon', 'teapot'), images_per_class=6,
                          num_seg_classes=3, num_train=4, num_val=4, image_size=48, seed=0):
    """A generated set in the layouts docs/own_data.md asks for, under ``top``:
    ``data/my_classes/<class name>/*.png`` (class per folder, any names) and
    ``data/my_seg`` (PaddleSeg ``Dataset``: ``images/``, ``labels/`` with
    0 = background and 1..num_seg_classes, ``train.txt``, ``val.txt``).
    -> {'my_classes', 'my_seg', 'class_names' (sorted), 'num_classes' (of my_seg)}."""
    import shutil
    names = sorted(class_names)
    made = make_source_set(os.path.join(top, 'gen_source'), len(names), images_per_class,
                           image_size, seed=seed)
    classes = os.path.join(top, 'data', 'my_classes')
    os.makedirs(classes, exist_ok=True)
    for wnid, name in zip(made['class_names'], names):
        shutil.move(os.path.join(made['image_root'], 'train', wnid), os.path.join(classes, name))
    shutil.rmtree(os.path.join(top, 'gen_source'))
    seg_root = os.path.join(top, 'data', 'my_seg')
    seg = make_target_set(seg_root, num_seg_classes, num_train, num_val, image_size, seed=seed + 1)
    os.replace(seg['test_path'], os.path.join(seg_root, 'val.txt'))
    return {'my_classes': classes, 'my_seg': seg_root, 'class_names': names,
            'num_classes': seg['num_classes']}
