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
    """Write one label file atomically (temp file, then rename)."""
    mask = np.asarray(mask)
    arrays = {MASK_KEY: (mask > 0).astype(np.uint8)}
    if confidence is not None:
        confidence = np.asarray(confidence, dtype=np.float32)
        if confidence.shape != mask.shape:
            raise PSSLError(f'{path}: confidence {confidence.shape} and mask '
                            f'{mask.shape} differ in shape')
        arrays[CONFIDENCE_KEY] = np.clip(confidence, 0, 1).astype(np.float16)
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays),
                 suffix='.npz')


def read_label(path):
    """-> (mask uint8 [H, W] with 1 = object, confidence float32 [H, W] or None)."""
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
    return mask, confidence


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
