"""PSSL pre-training dataset that also carries per-pixel confidence weights."""
import os

import numpy as np
import paddle
from paddleseg.cvlibs import manager
from paddleseg.transforms import Compose
from paddleseg.utils import logger

from ..pseudo_labels import store
from ..utils.errors import PSSLError
from ..utils.io import read_image_bgr


@manager.DATASETS.add_component
class WeightedPSSLDataset(paddle.io.Dataset):
    """Reads a PSSL label store (upstream's released layout or ours, see
    ``paddle_pssl.pseudo_labels.store``) next to the classification images.

    On upstream's files it yields the same ``img`` and ``label`` as
    ``paddleseg.datasets.PSSLDataset``: label = class id where the mask is 1,
    1000 (background) elsewhere, 1001 (ignore) where transforms pad.

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
            image or label with one line naming the file; 'skip' logs that line
            once and uses the next good sample instead.
        file_list (str): list file inside ``pssl_root``.
        edge (bool): kept for upstream's signature; unused.
    """
    NUM_CLASSES = store.NUM_CLASSES
    IGNORE_INDEX = store.IGNORE_INDEX
    BACKGROUND = store.BACKGROUND
    IMG_CHANNELS = 3

    def __init__(self, transforms, imagenet_root, pssl_root, mode='train',
                 use_confidence=False, on_bad_sample='raise',
                 file_list=store.FILE_LIST, edge=False):
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
        self.num_classes = self.NUM_CLASSES
        self.ignore_index = self.IGNORE_INDEX
        self.imagenet_root = imagenet_root
        self.pssl_root = pssl_root

        labels, self.class_names = store.list_labels(pssl_root, file_list)
        if len(self.class_names) > self.BACKGROUND:
            raise PSSLError(f'{os.path.join(pssl_root, store.SYNSETS)}: {len(self.class_names)} classes, '
                            f'at most {self.BACKGROUND} fit the 1001-class label space')
        self.class_id_dict = {n: i for i, n in enumerate(self.class_names)}
        self.file_list = [(os.path.join(imagenet_root, store.image_relpath(rel)),
                           os.path.join(pssl_root, rel), class_id) for rel, class_id, _ in labels]
        list_path = os.path.join(pssl_root, file_list)
        if not self.file_list:
            raise PSSLError(f'{list_path}: file list is empty')
        self._reported = set()

    def __len__(self):
        return len(self.file_list)

    def _load(self, idx):
        image_path, label_path, class_id = self.file_list[idx]
        image = read_image_bgr(image_path)
        mask, confidence = store.read_label(label_path)
        if mask.shape != image.shape[:2]:
            raise PSSLError(f'{label_path}: label is {mask.shape[1]}x{mask.shape[0]} but '
                            f'its image {image_path} is {image.shape[1]}x{image.shape[0]}')
        label = np.full(mask.shape, self.BACKGROUND, dtype=np.int64)
        label[mask == 1] = class_id
        data = {'img': image.astype('float32'), 'label': label,
                'trans_info': [], 'gt_fields': ['label']}
        if self.use_confidence:
            data['weight'] = (confidence if confidence is not None else
                              np.ones(mask.shape, np.float32))
            data['gt_fields'].append('weight')
        return self.transforms(data)

    def __getitem__(self, idx):
        if self.on_bad_sample == 'raise':
            return self._load(idx)
        for step in range(len(self.file_list)):
            j = (idx + step) % len(self.file_list)
            try:
                return self._load(j)
            except PSSLError as e:
                if j not in self._reported:
                    self._reported.add(j)
                    logger.warning(f'skipped: {e}')
        raise PSSLError(f'{self.pssl_root}: no readable sample in the file list')
