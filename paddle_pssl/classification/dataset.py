"""A classification set on disk, read per batch in DataLoader workers.

Only the file list (paths and class ids) stays in memory. Each sample is read,
decoded, cropped, flipped and resized in ``paddle.io.DataLoader`` workers
(``num_workers``; 0 reads in the main process), so a run's resident memory
does not grow with the number of images.

Batches are a pure function of (seed, iteration): the batch sampler names,
for every sample, its running number in the run and its image; the crop
and flip of that sample come from a generator seeded by (seed, running
number). A resumed run sees exactly the batches an uninterrupted one would,
whatever the worker count.

A reader that fails hands its error over in the batch (``SAMPLE_ERROR``, as
:mod:`paddle_pssl.datasets.pssl` does): an exception inside a Paddle
DataLoader reader can leave the main process waiting forever.
"""
import contextlib
import random
import threading
from dataclasses import dataclass, field
from functools import partial
from typing import List

import cv2
import numpy as np

import paddle

from ..datasets.classification_set import list_source
from ..datasets.pssl import SAMPLE_ERROR, hand_off_exception, raise_handed_off
from ..utils.errors import PSSLError
from ..utils.io import read_image_any

__all__ = ['ClassificationSet', 'load_classification_set', 'split_train_val',
           'batch_indices', 'augment_image', 'iteration_rng', 'train_batches', 'eval_batches']

EVAL_BATCH = 64
IN_PROCESS = {'num_workers': 0, 'use_shared_memory': False}   # a loader without readers


@dataclass
class ClassificationSet:
    paths: List[str]
    labels: np.ndarray        # int64 [N]
    rel_paths: List[str]
    class_names: List[str]
    skipped: List[str] = field(default_factory=list)  # unreadable images left out

    def __len__(self):
        return len(self.labels)

    def subset(self, index):
        index = np.asarray(index, dtype=np.int64)
        return ClassificationSet([self.paths[i] for i in index], self.labels[index],
                                 [self.rel_paths[i] for i in index], self.class_names)


def read_rgb(path, read_size):
    """uint8 RGB; photos much larger than ``read_size`` are decoded reduced."""
    bgr, _ = read_image_any(path, min_size=1, reduce_to=read_size)
    return bgr[:, :, ::-1]


def stretch(image, size):
    """Stretch (not crop) to ``size`` x ``size``, as the label generator does."""
    if image.shape[0] == size and image.shape[1] == size:
        return np.ascontiguousarray(image)
    interp = cv2.INTER_AREA if min(image.shape[:2]) >= size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=interp)


class _Images(paddle.io.Dataset):
    """The samples of a :class:`ClassificationSet` for a DataLoader.

    ``train``: the key is (running number, image index), the sample is the
    augmented image at ``out_size``; ``eval``: the key is the image index, the
    image is stretched to ``out_size``; ``check``: only whether it reads.
    """

    def __init__(self, data, mode, out_size, seed=0, augment=None):
        self.data, self.mode, self.out_size = data, mode, int(out_size)
        self.seed, self.augment = int(seed), augment or {}

    def __len__(self):
        return len(self.data)

    def __getitem__(self, key):
        number, index = key if self.mode == 'train' else (None, key)
        image = None
        try:
            rgb = read_rgb(self.data.paths[index], self.out_size)
            if self.mode == 'train':
                image = augment_image(rgb, self.out_size, iteration_rng(self.seed, number, 1),
                                      **self.augment)
            elif self.mode == 'eval':
                image = stretch(rgb, self.out_size)
            error = ''
        except Exception as e:  # noqa: BLE001  (raised again in the main process)
            error = hand_off_exception(e)
        sample = {'label': self.data.labels[index], 'index': np.int64(index), SAMPLE_ERROR: error}
        if self.mode != 'check':
            sample['image'] = (image if image is not None else
                               np.zeros((self.out_size, self.out_size, 3), np.uint8))
        return sample


def _seed_worker(seed, worker_id):
    # Nothing here draws from the global generators (each sample has its own),
    # but a library that does then differs per worker and repeats per run.
    # No cv2.setNumThreads here: in a forked reader it can wait forever on the
    # parent's OpenCV thread pool (seen in the test suite).
    state = int(np.random.SeedSequence([int(seed), int(worker_id), 5]).generate_state(1)[0])
    np.random.seed(state)
    random.seed(state)
    cv2.setRNGSeed(state & 0x7fffffff)


@contextlib.contextmanager
def _loader(dataset, batch_sampler, loader_cfg, seed):
    """``with _loader(...) as batches``: the loader's batches; on leaving, its
    reader thread and processes are stopped and the thread joined.

    Shim for paddle.io.DataLoader (2.6 and 3.3): its iterator stops only when
    it is collected, and at the end of an epoch only signals its reader
    thread. A loader forked while another loader's thread frees or allocates
    host memory copies the allocator's statistics lock held, and the new
    readers wait on it forever; a traceback that keeps a loader alive (an
    error raised while reading) is enough."""
    workers = int(loader_cfg['num_workers'])
    it = iter(paddle.io.DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers,
                                   use_shared_memory=bool(loader_cfg['use_shared_memory']),
                                   worker_init_fn=partial(_seed_worker, seed) if workers else None,
                                   return_list=True))
    try:
        yield it
    finally:
        getattr(it, '_try_shutdown_all', lambda: None)()
        thread = getattr(it, '_thread', None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)


def _numpy(batch):
    for error in batch[SAMPLE_ERROR]:
        raise_handed_off(error)
    return {k: v.numpy() if isinstance(v, paddle.Tensor) else np.asarray(v)
            for k, v in batch.items() if k != SAMPLE_ERROR}


class _Plan:
    """A batch sampler that makes batch ``i`` (a list of keys) when asked:
    the keys of a long run would not grow the memory either."""

    def __init__(self, count, make):
        self.count, self.make = count, make

    def __len__(self):
        return self.count

    def __iter__(self):
        return (self.make(i) for i in range(self.count))


def _in_order(num_items, batch_size):
    return _Plan(-(-num_items // batch_size),
                 lambda b: list(range(b * batch_size, min((b + 1) * batch_size, num_items))))


def load_classification_set(image_root, read_size, file_list=None, synsets=None,
                            key='train_dataset', on_bad_image='skip', loader_cfg=None):
    """List a class-per-folder set (or a file list + synsets) and check that
    every image reads (decoded once in the loader's workers, nothing kept).

    An unreadable image is left out and listed in ``skipped``
    (``on_bad_image='skip'``) or stops the run with its name ('raise').
    ``loader_cfg``: ``num_workers`` and ``use_shared_memory``.
    """
    if on_bad_image not in ('skip', 'raise'):
        raise PSSLError(f"{key}.on_bad_image must be 'skip' or 'raise', got {on_bad_image!r}")
    items, class_names = list_source(image_root, file_list, synsets, key=key)
    if not items:
        raise PSSLError(f'{image_root}: no images found ({key}.image_root)')
    if len(class_names) < 2:
        raise PSSLError(f'{image_root}: {len(class_names)} class; classification needs >= 2')
    listed = ClassificationSet([it.image_path for it in items],
                               np.array([it.class_id for it in items], np.int64),
                               [it.rel for it in items], list(class_names))
    loader_cfg = loader_cfg or IN_PROCESS
    check = _Images(listed, 'check', read_size)
    bad = []
    with _loader(check, _in_order(len(listed), EVAL_BATCH), loader_cfg, 0) as batches:
        for batch in batches:
            for index, error in zip(batch['index'].numpy(), batch[SAMPLE_ERROR]):
                if not error:
                    continue
                try:
                    raise_handed_off(error)
                except PSSLError:
                    if on_bad_image == 'raise':
                        raise
                    bad.append(int(index))
    if len(bad) == len(listed):
        raise PSSLError(f'{image_root}: none of the {len(items)} images could be read')
    kept = np.setdiff1d(np.arange(len(listed)), np.array(bad, np.int64))
    data = listed.subset(kept)
    data.skipped = [listed.rel_paths[i] for i in bad]
    return data


def train_batches(data, batch_size, seed, start, iters, augment, loader_cfg):
    """Yield ``{'image': uint8 [B, S, S, 3] RGB, 'label', 'index'}`` for
    iterations ``start``..``iters - 1``; ``augment``: ``out_size``, ``flip``,
    ``scale``, ``ratio`` (see :func:`augment_image`)."""
    augment = dict(augment)
    out_size = augment.pop('out_size')
    def keys(b):
        it = start + b
        return [(it * batch_size + j, int(i))
                for j, i in enumerate(batch_indices(len(data), batch_size, it, seed))]

    plan = _Plan(iters - start, keys)
    dataset = _Images(data, 'train', out_size, seed, augment)
    with _loader(dataset, plan, loader_cfg, seed) as batches:
        for batch in batches:
            yield _numpy(batch)


def eval_batches(data, size, batch_size=EVAL_BATCH):
    """Yield ``(uint8 [B, size, size, 3] RGB stretched, labels)`` in order,
    read in this process: evaluation runs while the training loader's thread
    is alive, and readers forked then can copy its allocator lock held."""
    dataset = _Images(data, 'eval', size)
    with _loader(dataset, _in_order(len(data), batch_size), IN_PROCESS, 0) as batches:
        for batch in batches:
            batch = _numpy(batch)
            yield batch['image'], batch['label']


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


def augment_image(image, out_size, rng, flip=True, scale=(1.0, 1.0), ratio=(3 / 4, 4 / 3)):
    """Random resized crop and horizontal flip of one uint8 image -> uint8
    [out, out, 3]. The box is drawn on the image as if stretched to a square
    (area fraction in ``scale``, aspect in ``ratio``), the frame the label
    generator sees; the crop is then resized from the decoded pixels."""
    if tuple(scale) != (1.0, 1.0):
        image = _random_resized_crop(image, rng, scale, ratio)
    image = stretch(image, out_size)
    if flip and rng.random() < 0.5:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)


def _random_resized_crop(image, rng, scale, ratio):
    height, width = image.shape[:2]
    log_ratio = np.log(ratio)
    for _ in range(10):
        area = rng.uniform(scale[0], scale[1])
        aspect = np.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w, h = np.sqrt(area * aspect), np.sqrt(area / aspect)   # fractions of the sides
        if w <= 1 and h <= 1:
            top, left = rng.uniform(0, 1 - h), rng.uniform(0, 1 - w)
            y0 = min(int(round(top * height)), height - 1)
            x0 = min(int(round(left * width)), width - 1)
            y1 = max(y0 + 1, min(height, int(round((top + h) * height))))
            x1 = max(x0 + 1, min(width, int(round((left + w) * width))))
            return image[y0:y1, x0:x1]
    return image  # no valid box: the whole image, as torchvision falls back to
