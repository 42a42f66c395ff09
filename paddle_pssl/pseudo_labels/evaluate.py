"""Label quality: a label store against ground-truth object masks.

Ground truth for image ``<rel>`` (e.g. ``train/<class>/<name>.JPEG``) is the
PNG ``<gt_root>/<rel minus its extension>.png``, non-zero = the image's object.
Both are mapped to PSSL's label space (class id on the object, 1000 elsewhere)
and confusion counts are summed over the set:
    mIoU      mean IoU over background and every class that occurs;
    fg IoU    IoU of object-vs-background, whatever the class.
"""
import os

import cv2
import numpy as np

from . import store
from ..utils.errors import PSSLError


def gt_path(gt_root, rel):
    return os.path.join(gt_root, os.path.splitext(rel)[0] + '.png')


def read_gt_mask(path, shape=None):
    mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise PSSLError(f'{path}: cannot read ground-truth mask')
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    mask = (mask > 0).astype(np.uint8)
    if shape is not None and mask.shape != tuple(shape):
        raise PSSLError(f'{path}: mask is {mask.shape[1]}x{mask.shape[0]}, label is '
                        f'{shape[1]}x{shape[0]}')
    return mask


class IoUCounter:
    """Accumulates per-class intersection/union and binary foreground counts."""

    def __init__(self):
        self.inter, self.union = {}, {}
        self.fg_inter = self.fg_union = 0
        self.images = 0

    def add(self, pred_mask, gt_mask, class_id):
        pred_mask, gt_mask = pred_mask.astype(bool), gt_mask.astype(bool)
        for cid, p, g in ((class_id, pred_mask, gt_mask),
                          (store.BACKGROUND, ~pred_mask, ~gt_mask)):
            self.inter[cid] = self.inter.get(cid, 0) + int(np.sum(p & g))
            self.union[cid] = self.union.get(cid, 0) + int(np.sum(p | g))
        self.fg_inter += int(np.sum(pred_mask & gt_mask))
        self.fg_union += int(np.sum(pred_mask | gt_mask))
        self.images += 1

    def to_dict(self):
        """JSON-ready counts (they add up over shards, see :meth:`add_counts`)."""
        return {'inter': {str(c): v for c, v in self.inter.items()},
                'union': {str(c): v for c, v in self.union.items()},
                'fg_inter': self.fg_inter, 'fg_union': self.fg_union, 'images': self.images}

    def add_counts(self, counts):
        """Add counts written by :meth:`to_dict` (another shard's)."""
        for cid, v in counts['inter'].items():
            self.inter[int(cid)] = self.inter.get(int(cid), 0) + v
        for cid, v in counts['union'].items():
            self.union[int(cid)] = self.union.get(int(cid), 0) + v
        self.fg_inter += counts['fg_inter']
        self.fg_union += counts['fg_union']
        self.images += counts['images']
        return self

    def result(self):
        per_class = {cid: self.inter[cid] / self.union[cid]
                     for cid in self.union if self.union[cid] > 0}
        return {'miou': float(np.mean(list(per_class.values()))) if per_class else 0.0,
                'fg_iou': self.fg_inter / self.fg_union if self.fg_union else 0.0,
                'per_class_iou': per_class, 'images': self.images}


def evaluate_store(pssl_root, gt_root):
    """Quality of every label listed in ``<pssl_root>/train.txt`` that has a GT
    mask. A label file that fails the store's checks (:func:`.store.read_label`:
    values other than 0/1, a bad confidence, unreadable) is left out and
    listed in ``bad_labels`` ({file: problem}) instead of stopping the run."""
    labels, _ = store.list_labels(pssl_root)
    counter, missing, bad = IoUCounter(), [], {}
    for rel_label, class_id, _ in labels:
        rel = store.image_relpath(rel_label)
        path = gt_path(gt_root, rel)
        if not os.path.isfile(path):
            missing.append(rel)
            continue
        label_path = os.path.join(pssl_root, rel_label)
        try:
            mask, _ = store.read_label(label_path)
        except PSSLError as e:
            bad[label_path] = str(e)
            continue
        counter.add(mask, read_gt_mask(path, mask.shape), class_id)
    out = counter.result()
    out['missing_gt'] = missing
    out['bad_labels'] = bad
    if not out['images'] and bad:
        raise PSSLError(f'{pssl_root}: all {len(bad)} labels with a ground-truth mask are bad; '
                        f'first: {next(iter(bad.values()))}')
    if not out['images']:
        raise PSSLError(f'{gt_root}: no ground-truth mask matches a label in '
                        f'{os.path.join(pssl_root, store.FILE_LIST)}')
    return out


def _boundary(mask):
    mask = mask.astype(np.uint8)
    return (mask - cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                             borderValue=0)) > 0


def boundary_f_score(pred_mask, gt_mask, tolerance=2):
    """Contour F-score: a predicted boundary pixel counts as correct within
    ``tolerance`` pixels of the true boundary (precision), and vice versa
    (recall); F = 2PR / (P + R). 1.0 when both masks are empty."""
    pred_b, gt_b = _boundary(pred_mask), _boundary(gt_mask)
    if not pred_b.any() and not gt_b.any():
        return 1.0
    if not pred_b.any() or not gt_b.any():
        return 0.0
    dist_to_gt = cv2.distanceTransform((~gt_b).astype(np.uint8), cv2.DIST_L2, 3)
    dist_to_pred = cv2.distanceTransform((~pred_b).astype(np.uint8), cv2.DIST_L2, 3)
    precision = float(np.mean(dist_to_gt[pred_b] <= tolerance))
    recall = float(np.mean(dist_to_pred[gt_b] <= tolerance))
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
