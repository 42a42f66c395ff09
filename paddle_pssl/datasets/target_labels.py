"""Checks of the label masks of PaddleSeg datasets (``Dataset``, ``VOC``,
``Cityscapes``, ...) used for fine-tuning, evaluation and M&M tuning.

PaddleSeg reads a label PNG as it is: a value at or above ``num_classes``
(other than the ignore index) ends training in a long traceback from the
loss (``label value should less than ...``) that names no file, and masks of
a binary task saved as 0/255 (common in other tools) train and evaluate with
every object pixel ignored (255 is the ignore index), silently.

:func:`check_target_labels` wraps a dataset's transforms so that each label
file is read once, as PaddleSeg's ``Compose`` reads it, and checked (one
``max()``) before the transforms: a bad value stops with one line naming the
file and the value; 0/255 masks of a two-class task give one warning, naming
a file. During a run (``hand_off_errors``, see :mod:`paddle_pssl.core.train`)
the error travels with the batch and is raised in the main thread, as for
:class:`~paddle_pssl.datasets.pssl.WeightedPSSLDataset`.
"""
import numpy as np

from ..utils.errors import PSSLError
from .pssl import SAMPLE_ERROR, SAMPLE_FILE, WeightedPSSLDataset, hand_off_error

__all__ = ['check_target_labels', 'label_problem', 'CheckedLabels']


def label_problem(label, num_classes, ignore_index):
    """Why ``label`` is not a mask of class ids below ``num_classes`` (or
    ``ignore_index``), or None."""
    if label.ndim != 2:
        return (f'label is {"x".join(map(str, label.shape))}; expected one channel of class '
                f'ids (a colour image? save the class id of each pixel, e.g. a palette PNG)')
    if label.dtype.kind not in 'biu':
        return f'label has dtype {label.dtype}; expected integer class ids'
    if label.size == 0:
        return None
    low = int(label.min()) if label.dtype.kind == 'i' else 0
    if int(label.max()) < num_classes and low >= 0:
        return None
    bad = [int(v) for v in np.unique(label[(label >= num_classes) | (label < 0)])
           if v != ignore_index]
    if not bad:
        return None
    return (f'label value {bad[0]} is not a class id: num_classes is {num_classes} '
            f'(ids 0-{num_classes - 1}) and ignore_index {ignore_index}')


def _only_0_and_255(label, num_classes, ignore_index):
    return (num_classes == 2 and ignore_index == 255 and label.ndim == 2 and label.size
            and int(label.max()) == 255 and not (label == 1).any())


class CheckedLabels:
    """A dataset's transforms with the label check in front (see the module
    docstring); everything else is the wrapped transforms'."""

    def __init__(self, transforms, dataset):
        self.transforms, self.dataset = transforms, dataset
        self.warned = False

    def __getattr__(self, name):
        return getattr(self.transforms, name)

    def _read(self, path):
        from PIL import Image
        try:
            with Image.open(path) as image:
                return np.asarray(image), None   # as PaddleSeg's Compose reads it
        except (OSError, ValueError) as e:
            return None, f'{path}: cannot read label ({e})'.splitlines()[0]

    def __call__(self, data):
        path = data.get('label') if isinstance(data.get('label'), str) else None
        handing_off = getattr(self.dataset, 'hand_off_errors', False)
        error = None
        if path is not None:
            num_classes, ignore = self.dataset.num_classes, self.dataset.ignore_index
            label, error = self._read(path)
            if error is None:
                problem = label_problem(label, num_classes, ignore)
                error = f'{path}: {problem}' if problem else None
            if error is None and not self.warned and _only_0_and_255(label, num_classes, ignore):
                self.warned = True
                from paddleseg.utils import logger
                logger.warning(f'{path}: this two-class mask holds only 0 and 255; 255 is the '
                               'ignore index, so its object pixels are ignored: save masks as 0/1')
            if error is not None:
                if not handing_off:
                    raise PSSLError(error)
                # a stand-in the batch can hold, all ignored; the trainer raises the error
                label = np.full(_image_shape(data['img'], error), ignore, np.uint8)
            data['label'] = label
        data = self.transforms(data)
        if handing_off:
            data[SAMPLE_ERROR] = hand_off_error(error)
            data[SAMPLE_FILE] = path or ''
        return data


def _image_shape(image, error):
    if not isinstance(image, str):
        return np.shape(image)[:2]
    import cv2
    read = cv2.imread(image, cv2.IMREAD_UNCHANGED)
    if read is None:
        raise PSSLError(error)
    return read.shape[:2]


def check_target_labels(dataset):
    """Put :class:`CheckedLabels` in front of a PaddleSeg dataset's
    transforms (once); WeightedPSSLDataset checks its own labels, and a
    dataset without a file list, classes and ignore index is left alone.
    -> the dataset."""
    if dataset is None or isinstance(dataset, WeightedPSSLDataset):
        return dataset
    if not all(hasattr(dataset, a) for a in ('file_list', 'transforms', 'num_classes',
                                              'ignore_index')):
        return dataset
    if not isinstance(dataset.transforms, CheckedLabels):
        dataset.transforms = CheckedLabels(dataset.transforms, dataset)
        dataset.hand_off_errors = False
    return dataset
