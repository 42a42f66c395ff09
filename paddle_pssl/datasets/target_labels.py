"""Checks of the label masks of PaddleSeg datasets (``Dataset``, ``VOC``,
``Cityscapes``, ...) used for fine-tuning, evaluation and M&M tuning.

PaddleSeg reads a label PNG as it is: a value at or above ``num_classes``
(other than the ignore index) ends training in a long traceback from the
loss (``label value should less than ...``) that names no file; masks saved
as 0/255 (common in other tools) train and evaluate with every object pixel
ignored (255 is the ignore index); and a ``num_classes`` above the classes
the masks hold averages mIoU over classes that score IoU 0. All silently.

:func:`check_target_labels` wraps each dataset's transforms so that each
label file is read once, as PaddleSeg's ``Compose`` reads it, and checked
(one ``max()``) before the transforms: a bad value stops with one line naming
the file and the value. During a run (``hand_off_errors``, see
:mod:`paddle_pssl.core.train`) the error travels with the batch and is raised
in the main thread, as for :class:`~paddle_pssl.datasets.pssl.WeightedPSSLDataset`.

Before the run it also reads the label files of the datasets it is given,
together, until every class id ``0..num_classes-1`` has been seen
(:func:`scan_classes`; usually a few files, all of them only when a class is
missing): a bad value stops there already; masks holding only 0 and 255 warn
once naming a file, in any task; class ids that occur in no mask get one
warning line naming them.
"""
import numpy as np

from ..utils.errors import PSSLError
from .pssl import SAMPLE_ERROR, SAMPLE_FILE, WeightedPSSLDataset, hand_off_error

__all__ = ['check_target_labels', 'label_problem', 'scan_classes', 'CheckedLabels']


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


class CheckedLabels:
    """A dataset's transforms with the label check in front (see the module
    docstring); everything else is the wrapped transforms'."""

    def __init__(self, transforms, dataset):
        self.transforms, self.dataset = transforms, dataset

    def __getattr__(self, name):
        return getattr(self.transforms, name)

    def __call__(self, data):
        path = data.get('label') if isinstance(data.get('label'), str) else None
        handing_off = getattr(self.dataset, 'hand_off_errors', False)
        error = None
        if path is not None:
            num_classes, ignore = self.dataset.num_classes, self.dataset.ignore_index
            label, error = _read_label(path)
            if error is None:
                problem = label_problem(label, num_classes, ignore)
                error = f'{path}: {problem}' if problem else None
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


def _read_label(path):
    """(label array as PaddleSeg's Compose reads it, None) or (None, error line)."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            return np.asarray(image), None
    except (OSError, ValueError) as e:
        return None, f'{path}: cannot read label ({e})'.splitlines()[0]


def _values(label):
    if label.dtype == np.uint8:
        return np.flatnonzero(np.bincount(label.ravel(), minlength=256))
    return np.unique(label)


def _checked(dataset):
    return all(hasattr(dataset, a) for a in ('file_list', 'transforms', 'num_classes',
                                             'ignore_index'))


def _ids(ids, limit=8):
    shown = ', '.join(str(i) for i in ids[:limit])
    return shown + (f', ... {len(ids) - limit} more' if len(ids) > limit else '')


def scan_classes(datasets):
    """Read the label files of ``datasets`` (PaddleSeg datasets of one task
    that read them as PaddleSeg's ``Dataset`` does) until each class id
    below ``num_classes`` has been seen; raise PSSLError
    for a bad file, warn (one line) for 0/255 masks or class ids seen in no
    file. -> {'read', 'files', 'missing', 'only_0_255', 'seconds'}."""
    import time
    from paddleseg.utils import logger
    from paddleseg.datasets import Dataset
    # only where the label file is the mask PaddleSeg trains on: ADE20K shifts
    # its values by -1, PSSLDataset reads .npz files, both in their own __getitem__
    datasets = [d for d in datasets if d is not None and _checked(d)
                and type(d).__getitem__ is Dataset.__getitem__]
    if not datasets:
        return None
    num_classes, ignore = int(datasets[0].num_classes), datasets[0].ignore_index
    t0 = time.time()
    seen = np.zeros(num_classes, bool)
    files = [entry[1] for d in datasets for entry in d.file_list
             if len(entry) > 1 and isinstance(entry[1], str)]
    read, only_0_255, with_255 = 0, True, None
    for path in files:
        label, error = _read_label(path)
        if error is None:
            problem = label_problem(label, num_classes, ignore)
            error = f'{path}: {problem}' if problem else None
        if error is not None:
            raise PSSLError(error)
        read += 1
        values = _values(label)
        seen[values[(values >= 0) & (values < num_classes)]] = True
        if only_0_255:
            only_0_255 = bool(np.isin(values, (0, 255)).all())
            if with_255 is None and 255 in values:
                with_255 = path
        if seen.all():
            break
    missing = [int(i) for i in np.flatnonzero(~seen)] if read else []
    result = {'read': read, 'files': len(files), 'missing': missing,
              'only_0_255': bool(read and only_0_255 and with_255 and ignore == 255),
              'seconds': round(time.time() - t0, 3)}
    roots = ', '.join(sorted({str(getattr(d, 'dataset_root', '?')) for d in datasets}))
    modes = {getattr(d, 'mode', '') for d in datasets}
    which = {'train': 'training', 'val': 'validation'}
    kind = ' or '.join(which.get(m, m) for m in ('train', 'val') if m in modes) or 'label'
    if result['only_0_255']:
        logger.warning(f'{with_255}: the target masks hold only 0 and 255 ({read} read); 255 is '
                       'the ignore index, so their object pixels are ignored: save each pixel\'s '
                       f'class id (0-{num_classes - 1}), e.g. 1 for 255 with one object class')
    elif missing:
        one = len(missing) == 1
        fewer = (f'; if the task has {missing[0]} classes, set num_classes: {missing[0]}'
                 if missing == list(range(missing[0], num_classes)) else '')
        logger.warning(f"{roots}: class id{'' if one else 's'} {_ids(missing)} of num_classes "
                       f"{num_classes} occur{'s' if one else ''} in no {kind} mask ({read} read): "
                       f"mIoU averages over {'it' if one else 'them'} as IoU 0{fewer}")
    else:
        logger.info(f'{roots}: all {num_classes} class ids occur in the {kind} masks '
                    f'({read} of {len(files)} read, {result["seconds"]} s)')
    return result


def check_target_labels(*datasets):
    """Put :class:`CheckedLabels` in front of each PaddleSeg dataset's
    transforms (once), then :func:`scan_classes` over all of them together;
    WeightedPSSLDataset checks its own labels, and a dataset without a file
    list, classes and ignore index is left alone. -> the dataset (the
    datasets, when several are given)."""
    for dataset in datasets:
        if dataset is None or isinstance(dataset, WeightedPSSLDataset) or not _checked(dataset):
            continue
        if not isinstance(dataset.transforms, CheckedLabels):
            dataset.transforms = CheckedLabels(dataset.transforms, dataset)
            dataset.hand_off_errors = False
    scan_classes([d for d in datasets if not isinstance(d, WeightedPSSLDataset)])
    return datasets[0] if len(datasets) == 1 else datasets
