"""PSSL pre-training dataset that also carries per-pixel confidence weights."""
import os
import traceback

import numpy as np
import paddle
from paddleseg.cvlibs import manager
from paddleseg.transforms import Compose
from paddleseg.utils import logger

from ..pseudo_labels import store
from ..utils.errors import PSSLError
from ..utils.io import read_image_bgr

# The batch keys that carry a sample's error and its label file to the
# trainer (see __getitem__; the file names a batch with a non-finite loss).
SAMPLE_ERROR = 'sample_error'
SAMPLE_FILE = 'sample_file'
_PSSL, _OTHER = 'pssl:', 'other:'


@manager.DATASETS.add_component
class WeightedPSSLDataset(paddle.io.Dataset):
    """Reads a PSSL label store (upstream's released layout or ours, see
    ``paddle_pssl.pseudo_labels.store``) next to the classification images.

    On upstream's files, in the default ``upstream`` label space, it yields
    the same ``img`` and ``label`` as ``paddleseg.datasets.PSSLDataset``:
    label = class id where the mask is 1, 1000 (background) elsewhere, 1001
    (ignore) where transforms pad. ``label_space: compact`` trains a store of
    K classes in K + 1 outputs (background K, ignore 255), ``objectness`` in
    2 (object 0, background 1, ignore 255); see
    :class:`paddle_pssl.pseudo_labels.store.LabelSpace`. PaddleSeg's builder
    reads ``NUM_CLASSES`` and ``IGNORE_INDEX`` off the class: for a config,
    :meth:`bound_to` gives the class whose constants are its space's.

    Args:
        transforms (list): PaddleSeg transforms.
        imagenet_root (str): root of the images (``<root>/train/<class>/<file>``).
        pssl_root (str): root of the label store.
        mode (str): only 'train' (as upstream).
        use_confidence (bool): add the store's ``confidence`` map as
            ``data['weight']``; it goes through the transforms with the label
            and reaches pixel-weight-aware losses through
            ``paddle_pssl.core.train``. Files without one get weight 1.
        on_bad_sample (str): 'raise' (default) stops on a missing or corrupt
            image or label with one line naming the file (labels are checked
            as :func:`paddle_pssl.pseudo_labels.store.read_label` says: only
            0/1 in ``arr_0``, a finite confidence in [0, 1]); 'skip' logs that
            line once, with the count of bad samples so far (per reader
            process), and uses the next good sample instead.
        file_list (str): list file inside ``pssl_root``.
        edge (bool): kept for upstream's signature; unused.
        label_space (str): 'upstream' (default, 1001 outputs), 'compact'
            (the store's K classes + background) or 'objectness' (object,
            background).

    ``hand_off_errors`` (set by ``paddle_pssl.core.train`` for a run): instead
    of raising, ``__getitem__`` returns a stand-in sample whose
    ``SAMPLE_ERROR`` entry holds the error; :func:`raise_sample_error` raises
    it again where the batch arrives.
    """
    NUM_CLASSES = store.NUM_CLASSES
    IGNORE_INDEX = store.IGNORE_INDEX
    BACKGROUND = store.BACKGROUND
    IMG_CHANNELS = 3
    hand_off_errors = False

    def __init__(self, transforms, imagenet_root, pssl_root, mode='train',
                 use_confidence=False, on_bad_sample='raise',
                 file_list=store.FILE_LIST, edge=False, label_space='upstream'):
        if mode != 'train':
            raise PSSLError(f"WeightedPSSLDataset: mode must be 'train', got {mode!r}")
        if on_bad_sample not in ('raise', 'skip'):
            raise PSSLError("WeightedPSSLDataset: on_bad_sample must be 'raise' or "
                            f"'skip', got {on_bad_sample!r}")
        if transforms is None:
            raise PSSLError('WeightedPSSLDataset: transforms are required')
        for name, root in (('imagenet_root', imagenet_root), ('pssl_root', pssl_root)):
            if not root or not os.path.isdir(root):
                raise PSSLError(f'{root}: {name} is not a directory')
        self.transforms = Compose(transforms)
        self.mode = mode
        self.edge = edge
        self.use_confidence = use_confidence
        self.on_bad_sample = on_bad_sample
        self.imagenet_root = imagenet_root
        self.pssl_root = pssl_root

        labels, self.class_names = store.list_labels(pssl_root, file_list)
        self.label_space = store.LabelSpace(label_space, len(self.class_names),
                                            os.path.join(pssl_root, store.SYNSETS))
        self.num_classes = self.label_space.num_classes
        self.ignore_index = self.label_space.ignore_index
        self.background = self.label_space.background
        self.class_id_dict = {n: i for i, n in enumerate(self.class_names)}
        self.file_list = [(os.path.join(imagenet_root, store.image_relpath(rel)),
                           os.path.join(pssl_root, rel), class_id) for rel, class_id, _ in labels]
        list_path = os.path.join(pssl_root, file_list)
        if not self.file_list:
            raise PSSLError(f'{list_path}: file list is empty')
        self._reported = set()
        self._last_shape = None
        self._loaded = None

    def __len__(self):
        return len(self.file_list)

    def _load(self, idx):
        image_path, label_path, class_id = self.file_list[idx]
        self._loaded = label_path
        image = read_image_bgr(image_path)
        mask, confidence = store.read_label(label_path)
        if mask.shape != image.shape[:2]:
            raise PSSLError(f'{label_path}: label is {mask.shape[1]}x{mask.shape[0]} but '
                            f'its image {image_path} is {image.shape[1]}x{image.shape[0]}')
        self._last_shape = image.shape[:2]
        label = np.full(mask.shape, self.background, dtype=np.int64)
        label[mask == 1] = self.label_space.class_id(class_id)
        return self._sample(image, label, confidence)

    def _sample(self, image, label, confidence):
        data = {'img': image.astype('float32'), 'label': label,
                'trans_info': [], 'gt_fields': ['label']}
        if self.use_confidence:
            data['weight'] = (confidence if confidence is not None else
                              np.ones(label.shape, np.float32))
            data['gt_fields'].append('weight')
        return self.transforms(data)

    def _get(self, idx):
        if self.on_bad_sample == 'raise':
            return self._load(idx)
        for step in range(len(self.file_list)):
            j = (idx + step) % len(self.file_list)
            try:
                return self._load(j)
            except PSSLError as e:
                if j not in self._reported:
                    self._reported.add(j)
                    logger.warning(f'skipped: {e} ({len(self._reported)} bad sample(s) '
                                   f'skipped so far)')
        raise PSSLError(f'{self.pssl_root}: no readable sample in the file list')

    def __getitem__(self, idx):
        if not self.hand_off_errors:
            return self._get(idx)
        # Paddle's DataLoader (2.6 and 3.3) lets an exception in the reader
        # thread (num_workers=0) end that thread without waking the main one,
        # which then waits forever; with workers it surfaces as a generic
        # SystemError after three tracebacks. So during a run nothing is
        # raised here: the error travels with the batch, in a stand-in sample
        # of the right shape, and the trainer raises it in the main thread.
        try:
            data = self._get(idx)
            error, loaded = '', self._loaded
        except Exception as e:  # noqa: BLE001  (re-raised by raise_sample_error)
            data = self._stand_in(idx)
            error = hand_off_exception(e)
            loaded = self.file_list[idx][1]
        data[SAMPLE_ERROR] = error
        data[SAMPLE_FILE] = loaded
        return data

    def _stand_in(self, idx):
        """A sample shaped as ``idx``'s would be (its image, else a blank one
        of the last good image's or the label's size), ignored everywhere."""
        image_path, label_path, _ = self.file_list[idx]
        try:
            image = read_image_bgr(image_path)
        except PSSLError:
            shape = self._last_shape
            if shape is None:
                try:
                    shape = store.read_label(label_path)[0].shape
                except PSSLError:
                    shape = (64, 64)
            image = np.zeros(tuple(shape) + (self.IMG_CHANNELS,), np.uint8)
        label = np.full(image.shape[:2], self.ignore_index, dtype=np.int64)
        return self._sample(image, label, None)

    @classmethod
    def bound_to(cls, dataset_cfg):
        """This class, or for a ``label_space`` other than upstream a
        subclass whose ``NUM_CLASSES``, ``IGNORE_INDEX`` and ``BACKGROUND``
        are that space's for the store the config names (its synsets file
        gives K)."""
        name = dataset_cfg.get('label_space', 'upstream')
        if name == 'upstream':
            return cls
        root = dataset_cfg.get('pssl_root')
        if not root or not os.path.isdir(root):
            raise PSSLError(f'{root}: pssl_root is not a directory')
        names = store.read_synsets(os.path.join(root, store.SYNSETS))
        space = store.LabelSpace(name, len(names), 'train_dataset.label_space')
        return type(cls.__name__, (cls,), {
            'NUM_CLASSES': space.num_classes, 'IGNORE_INDEX': space.ignore_index,
            'BACKGROUND': space.background, '__module__': cls.__module__})


def hand_off_error(error):
    """The ``SAMPLE_ERROR`` entry of a sample: '' or the one-line error."""
    return f'{_PSSL}{error}' if error else ''


def hand_off_exception(exc):
    """The ``SAMPLE_ERROR`` entry for an exception caught while reading a
    sample (call it inside the ``except``: it keeps the traceback of others)."""
    if isinstance(exc, PSSLError):
        return f'{_PSSL}{exc}'
    return f'{_OTHER}{traceback.format_exc()}'


def raise_handed_off(error):
    """Raise one ``SAMPLE_ERROR`` entry again ('' is no error): PSSLError
    for bad input, RuntimeError with the worker's traceback else."""
    if error.startswith(_PSSL):
        raise PSSLError(error[len(_PSSL):])
    if error:
        raise RuntimeError(f'reading a training sample failed:\n{error[len(_OTHER):]}')


def raise_sample_error(batch):
    """Raise the first error a batch carries from
    :meth:`WeightedPSSLDataset.__getitem__` (a no-op for other batches)."""
    errors = batch.get(SAMPLE_ERROR) if isinstance(batch, dict) else None
    for error in errors or ():
        raise_handed_off(error)
