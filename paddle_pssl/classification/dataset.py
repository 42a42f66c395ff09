"""A small classification set held in memory, and seeded batch sampling.

The benchmark sets are a few hundred images: decoding JPEGs every step would
cost more than the forward pass on 2 CPU cores, so every image is decoded
once, stretched to ``store_size`` x ``store_size`` and kept as uint8 RGB.
Batches are a pure function of (seed, iteration): a resumed run sees exactly
the batches (order, crops, flips) an uninterrupted one would.
"""
from dataclasses import dataclass, field
from typing import List

import cv2
import numpy as np

from ..datasets.classification_set import list_source
from ..utils.errors import PSSLError
from ..utils.io import read_image_any

__all__ = ['ClassificationSet', 'load_classification_set', 'split_train_val',
           'batch_indices', 'augment_batch', 'iteration_rng']


@dataclass
class ClassificationSet:
    images: np.ndarray        # uint8 [N, S, S, 3] RGB
    labels: np.ndarray        # int64 [N]
    rel_paths: List[str]
    class_names: List[str]
    skipped: List[str] = field(default_factory=list)  # unreadable images left out

    def __len__(self):
        return len(self.labels)

    def subset(self, index):
        index = np.asarray(index, dtype=np.int64)
        return ClassificationSet(self.images[index], self.labels[index],
                                 [self.rel_paths[i] for i in index], self.class_names)


def load_classification_set(image_root, store_size, file_list=None, synsets=None,
                            key='train_dataset', on_bad_image='skip'):
    """Decode a class-per-folder set (or a file list + synsets) into memory.

    Images are stretched (not cropped) to ``store_size`` square, INTER_AREA.
    An unreadable image is left out and listed in ``skipped``
    (``on_bad_image='skip'``) or stops the run with its name ('raise').
    """
    if on_bad_image not in ('skip', 'raise'):
        raise PSSLError(f"{key}.on_bad_image must be 'skip' or 'raise', got {on_bad_image!r}")
    items, class_names = list_source(image_root, file_list, synsets, key=key)
    if not items:
        raise PSSLError(f'{image_root}: no images found ({key}.image_root)')
    if len(class_names) < 2:
        raise PSSLError(f'{image_root}: {len(class_names)} class; classification needs >= 2')
    images = np.empty((len(items), store_size, store_size, 3), np.uint8)
    kept, skipped = [], []
    for item in items:
        try:
            bgr, _ = read_image_any(item.image_path, min_size=1)
        except PSSLError:
            if on_bad_image == 'raise':
                raise
            skipped.append(item.rel)
            continue
        interp = cv2.INTER_AREA if min(bgr.shape[:2]) >= store_size else cv2.INTER_LINEAR
        images[len(kept)] = cv2.resize(bgr, (store_size, store_size),
                                       interpolation=interp)[:, :, ::-1]
        kept.append(item)
    if not kept:
        raise PSSLError(f'{image_root}: none of the {len(items)} images could be read')
    labels = np.array([it.class_id for it in kept], np.int64)
    return ClassificationSet(images[:len(kept)], labels, [it.rel for it in kept],
                             list(class_names), skipped)


def split_train_val(labels, val_fraction, seed):
    """Stratified split: round(fraction * n_k) images of each class to val,
    at least one when the fraction is > 0 and the class has >= 2 images."""
    if not 0.0 <= val_fraction < 1.0:
        raise PSSLError(f'train_dataset.val_fraction must be in [0, 1), got {val_fraction}')
    rng = np.random.default_rng([int(seed), 7])
    train, val = [], []
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        members = members[rng.permutation(len(members))]
        n_val = int(round(val_fraction * len(members)))
        if val_fraction > 0 and len(members) >= 2:
            n_val = min(max(n_val, 1), len(members) - 1)
        else:
            n_val = 0
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return np.sort(np.array(train, np.int64)), np.sort(np.array(val, np.int64))


def iteration_rng(seed, iteration, stream):
    """Independent generator for (seed, iteration, stream); stream names a use."""
    return np.random.default_rng([int(seed), int(iteration), int(stream)])


def batch_indices(num_items, batch_size, iteration, seed):
    """Indices of batch ``iteration`` (0-based) when every epoch is a fresh
    seeded permutation and batches run across epoch boundaries."""
    start = iteration * batch_size
    out = np.empty(batch_size, np.int64)
    for j in range(batch_size):
        g = start + j
        epoch, pos = divmod(g, num_items)
        if j == 0 or pos == 0:
            perm = np.random.default_rng([int(seed), int(epoch), 11]).permutation(num_items)
        out[j] = perm[pos]
    return out


def augment_batch(images, out_size, rng, flip=True, scale=(1.0, 1.0),
                  ratio=(3 / 4, 4 / 3)):
    """Random resized crop (area fraction in ``scale``, aspect in ``ratio``)
    and horizontal flip; uint8 [B, S, S, 3] -> uint8 [B, out, out, 3]."""
    batch = images.shape[0]
    out = np.empty((batch, out_size, out_size, 3), np.uint8)
    crop = tuple(scale) != (1.0, 1.0)
    for b in range(batch):
        image = images[b]
        if crop:
            image = _random_resized_crop(image, rng, scale, ratio)
        if image.shape[0] != out_size or image.shape[1] != out_size:
            image = cv2.resize(image, (out_size, out_size), interpolation=cv2.INTER_LINEAR)
        if flip and rng.random() < 0.5:
            image = image[:, ::-1]
        out[b] = image
    return out


def _random_resized_crop(image, rng, scale, ratio):
    size = image.shape[0]
    area = size * size
    log_ratio = np.log(ratio)
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = np.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(np.sqrt(target * aspect)))
        h = int(round(np.sqrt(target / aspect)))
        if 0 < w <= size and 0 < h <= size:
            top = int(rng.integers(0, size - h + 1))
            left = int(rng.integers(0, size - w + 1))
            return image[top:top + h, left:left + w]
    return image  # no valid box: the whole image, as torchvision falls back to
