"""The label store: the one place its format is defined.

Layout (upstream PaddleSeg's released PSSL layout, plus our extras)::

    <pssl_root>/
        imagenet_lsvrc_2015_synsets.txt   class names (ImageNet wnids), line index = class id
        train.txt                          one label file per line, relative to pssl_root
        train/<class>/<image file name>_eiseg.npz
        manifest.json                      (ours) config, versions, per-image statistics, skipped images

Each ``*_eiseg.npz`` holds
    ``arr_0``       uint8 [H, W], 1 = object, 0 = background (exactly what upstream reads);
    ``confidence``  (ours, optional) float16 [H, W] in [0, 1], how strongly the
                    ensemble agrees with the pixel's label; the weighted dataset
                    turns it into the per-pixel loss weight.
Upstream's ``PSSLDataset`` reads only ``arr_0`` and ignores ``confidence``.

The image of ``train/<class>/<name>_eiseg.npz`` is ``<image_root>/train/<class>/<name>``
(upstream cuts the line at ``.JPEG``; for ImageNet files both agree). The class
id is the index of ``<class>`` in the synsets file.
"""
import os
import re
import zipfile

import numpy as np

from ..utils.errors import PSSLError
from ..utils.io import atomic_write

LABEL_SUFFIX = '_eiseg.npz'
FILE_LIST = 'train.txt'
SYNSETS = 'imagenet_lsvrc_2015_synsets.txt'
MANIFEST = 'manifest.json'
MASK_KEY = 'arr_0'
CONFIDENCE_KEY = 'confidence'

NUM_CLASSES = 1001  # 1000 ImageNet classes + background
BACKGROUND = 1000
IGNORE_INDEX = 1001

# The label space a store is trained in (the config key ``label_space``). In
# every space the store's classes come first and the background is the last
# output, so a loss's background is always ``num_classes - 1``:
#   upstream    upstream PSSL's: 1001 outputs, class id = synsets line index,
#               background 1000, ignore 1001 (any store of at most 1000 classes)
#   compact     K + 1 outputs for a store of K classes, background K, ignore 255
#               (PaddleSeg's usual ignore, the default padding of its transforms)
#   objectness  2 outputs, class-agnostic: every class is 0 (object), background 1,
#               ignore 255
# For a store of the 1000 ImageNet wnids, compact and upstream give the same
# outputs; only the ignore index differs.
LABEL_SPACES = ('upstream', 'compact', 'objectness')
COMPACT_IGNORE_INDEX = 255


class LabelSpace:
    """Outputs, background and ignore ids of one label space for a store of
    ``num_store_classes`` classes; :meth:`class_id` maps a store class id."""

    def __init__(self, name, num_store_classes, where='label_space'):
        if name not in LABEL_SPACES:
            raise PSSLError(f"{where}: {name!r} is not a label space; choose one of "
                            f"{', '.join(LABEL_SPACES)}")
        self.name = name
        self.num_store_classes = num_store_classes
        if name == 'upstream':
            if num_store_classes > BACKGROUND:
                raise PSSLError(f'{where}: {num_store_classes} classes, at most {BACKGROUND} fit '
                                'the upstream 1001-class label space')
            self.num_classes, self.background, self.ignore_index = NUM_CLASSES, BACKGROUND, IGNORE_INDEX
        elif name == 'compact':
            if num_store_classes + 1 > COMPACT_IGNORE_INDEX:
                raise PSSLError(f'{where}: {num_store_classes} classes and the background do not fit '
                                f'below the compact space\'s ignore index {COMPACT_IGNORE_INDEX}; '
                                'use label_space: upstream')
            self.num_classes = num_store_classes + 1
            self.background, self.ignore_index = num_store_classes, COMPACT_IGNORE_INDEX
        else:
            self.num_classes, self.background, self.ignore_index = 2, 1, COMPACT_IGNORE_INDEX

    def class_id(self, store_class_id):
        return 0 if self.name == 'objectness' else store_class_id

    def as_dict(self):
        return {'label_space': self.name, 'num_classes': self.num_classes,
                'background': self.background, 'ignore_index': self.ignore_index,
                'store_classes': self.num_store_classes}

    def __repr__(self):
        return (f'LabelSpace({self.name}: {self.num_classes} outputs, background {self.background}, '
                f'ignore {self.ignore_index})')


def label_relpath(image_relpath):
    """``train/<class>/<name>`` -> ``train/<class>/<name>_eiseg.npz``."""
    return image_relpath + LABEL_SUFFIX


def image_relpath(label_relpath_):
    if not label_relpath_.endswith(LABEL_SUFFIX):
        raise PSSLError(f'{label_relpath_}: label file name must end with {LABEL_SUFFIX}')
    return label_relpath_[:-len(LABEL_SUFFIX)]


def class_name_of(label_relpath_):
    """The class folder: ``train/<class>/<name>_eiseg.npz`` -> ``<class>``."""
    parts = label_relpath_.replace('\\', '/').split('/')
    if len(parts) < 2:
        raise PSSLError(f'{label_relpath_}: expected train/<class>/<file>{LABEL_SUFFIX}')
    return parts[-2]


def write_label(path, mask, confidence=None):
    """Write one label file atomically (temp file, then rename).

    A uint8 0/1 mask and a float16 confidence in [0, 1] are written as they
    are (no full-size copies: labels of huge images stay within bounded
    memory); anything else is cut to 0/1 and clipped to [0, 1] first."""
    mask = np.asarray(mask)
    if not (mask.dtype == np.uint8 and (mask.size == 0 or mask.max() <= 1)):
        mask = (mask > 0).astype(np.uint8)
    arrays = {MASK_KEY: mask}
    if confidence is not None:
        confidence = np.asarray(confidence)
        if confidence.shape != mask.shape:
            raise PSSLError(f'{path}: confidence {confidence.shape} and mask '
                            f'{mask.shape} differ in shape')
        if not (confidence.dtype == np.float16 and confidence_problem(confidence) is None):
            confidence = np.clip(confidence.astype(np.float32, copy=False), 0, 1).astype(np.float16)
        arrays[CONFIDENCE_KEY] = confidence
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays),
                 suffix='.npz')


def mask_problem(mask):
    """Why ``arr_0`` is not a label mask (a float dtype, or a value other than
    0 and 1, naming the first such value), or None. One ``max()`` (and a
    ``min()`` for signed types) on the array: cheap enough for every sample."""
    if mask.dtype.kind not in 'biu':
        return (f'{MASK_KEY} has dtype {mask.dtype}; expected uint8 with 1 = object, '
                f'0 = background')
    if mask.size == 0:
        return None
    high = mask.max()
    low = mask.min() if mask.dtype.kind == 'i' else 0
    if high <= 1 and low >= 0:
        return None
    bad = high if high > 1 else low
    hint = ' (a 0/255 mask? save mask > 0 as 1)' if bad == 255 else ''
    return (f'{MASK_KEY} holds the value {int(bad)}; expected only 0 (background) and '
            f'1 (object){hint}')


def confidence_problem(confidence):
    """Why a ``confidence`` array is not finite and within [0, 1], or None
    (two reductions; NaN and inf fail them)."""
    if confidence.dtype.kind != 'f':
        return f'{CONFIDENCE_KEY} has dtype {confidence.dtype}; expected float in [0, 1]'
    if confidence.size == 0:
        return None
    # float16 reductions are slow (seconds on 100 megapixels); as bits, every
    # value in [+0, 1] is at most 0x3C00 and NaN, inf and negatives are above
    if confidence.dtype == np.float16 and confidence.view(np.uint16).max() <= 0x3C00:
        return None
    low, high = confidence.min(), confidence.max()
    if low >= 0 and high <= 1:   # False for NaN
        return None
    if not np.isfinite(low) or not np.isfinite(high):
        values = confidence[~np.isfinite(confidence)]
        return f'{CONFIDENCE_KEY} holds {values[0]} ({values.size} non-finite values)'
    bad = low if low < 0 else high
    return f'{CONFIDENCE_KEY} holds {float(bad):g}, outside [0, 1]'


def read_label(path):
    """-> (mask uint8 [H, W] with 1 = object, confidence float32 [H, W] or None).

    Refused with one line naming the file (:func:`mask_problem`,
    :func:`confidence_problem`): a mask of another dtype or with other values
    than 0/1 (upstream's ``PSSLDataset`` would train every such pixel as
    background without a word), and a confidence with NaN, inf or values
    outside [0, 1]."""
    if not os.path.isfile(path):
        raise PSSLError(f'{path}: label file not found')
    try:
        with np.load(path) as npz:
            if MASK_KEY not in npz:
                raise PSSLError(f'{path}: label file has no {MASK_KEY!r} array')
            mask = npz[MASK_KEY]
            confidence = npz[CONFIDENCE_KEY].astype(np.float32) \
                if CONFIDENCE_KEY in npz else None
    except PSSLError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise PSSLError(f'{path}: corrupt label file ({type(e).__name__}: {e})'.splitlines()[0])
    if mask.ndim != 2:
        raise PSSLError(f'{path}: label mask must be 2-D, got shape {mask.shape}')
    problem = mask_problem(mask)
    if problem is None and confidence is not None:
        if confidence.shape != mask.shape:
            problem = f'{CONFIDENCE_KEY} is {confidence.shape}, {MASK_KEY} is {mask.shape}'
        else:
            problem = confidence_problem(confidence)
    if problem is not None:
        raise PSSLError(f'{path}: {problem}')
    return mask.astype(np.uint8, copy=False), confidence


def read_synsets(path, count=None):
    """Class names in class-id order, the project's one synsets reader.

    Rule: one name per line (a class folder name or a WordNet id such as
    ``n01440764``), surrounding whitespace stripped, blank lines skipped; the
    names must be distinct (a name is a class's folder), and with ``count``
    there must be exactly that many (1000 for ImageNet-1k).
    """
    if not os.path.isfile(path):
        raise PSSLError(f'{path}: synsets file not found')
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise PSSLError(f'{path}: synsets file is empty')
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise PSSLError(f'{path}: class names listed twice: {repeated[:3]}')
    if count is not None and len(names) != count:
        raise PSSLError(f'{path}: expected {count} class names, got {len(names)}')
    return names


def write_synsets(path, names):
    from ..utils.io import atomic_write_text
    atomic_write_text(path, ''.join(f'{n}\n' for n in names))


def relpath_problem(rel, root='the store'):
    """Why ``rel`` may not be a path inside ``root`` (absolute, or with a
    ``..`` part that could leave it), or None when it is fine. The one check
    for every list file's entries (label stores and classification sets)."""
    parts = rel.replace('\\', '/').split('/')
    if rel.startswith(('/', '\\')) or os.path.isabs(rel) or re.match(r'[A-Za-z]:', rel):
        return f'absolute path {rel!r} (entries are relative paths inside {root})'
    if '..' in parts:
        return f"path {rel!r} has a '..' part (entries stay inside {root})"
    return None


def list_labels(pssl_root, file_list=FILE_LIST):
    """The store's labels: ``(label_relpath, class_id, class_name)`` per line of
    the file list, and the class names. An entry that is absolute, has a
    ``..`` part, does not end with ``_eiseg.npz`` or names a class folder
    missing from the synsets stops with the list file and line named."""
    list_path = os.path.join(pssl_root, file_list)
    if not os.path.isfile(list_path):
        raise PSSLError(f'{list_path}: file list not found')
    synsets_path = os.path.join(pssl_root, SYNSETS)
    names = read_synsets(synsets_path)
    index = {n: i for i, n in enumerate(names)}
    labels = []
    with open(list_path) as f:
        for lineno, line in enumerate(f, 1):
            rel = line.strip()
            if not rel:
                continue
            problem = relpath_problem(rel)
            if problem is None and not rel.endswith(LABEL_SUFFIX):
                problem = f'{rel!r} does not end with {LABEL_SUFFIX}'
            if problem is None and '/' not in rel.replace('\\', '/'):
                problem = f'{rel!r} is not train/<class>/<file>{LABEL_SUFFIX}'
            if problem is not None:
                raise PSSLError(f'{list_path}:{lineno}: {problem}')
            name = class_name_of(rel)
            if name not in index:
                raise PSSLError(f'{list_path}:{lineno}: class folder {name!r} is not in {synsets_path}')
            labels.append((rel, index[name], name))
    return labels, names
