"""Metrics files without NaN: JSON has no NaN (Python writes the token
``NaN``, which strict readers refuse), and a NaN metric is a fact about the
data that deserves words. A value that is not a finite number is written as
``null``, its reason goes under ``null_reasons`` beside it, and the log says
so in one line per value."""
import json
import math

from .io import atomic_write_text

__all__ = ['write_metrics_json', 'segmentation_nan_reasons', 'write_segmentation_metrics']


def _finite(value, key, found):
    if isinstance(value, dict):
        return {k: _finite(v, f'{key}.{k}' if key else str(k), found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, f'{key}[{i}]', found) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        found.append(key)
        return None
    return value


def write_metrics_json(path, metrics, reasons=None):
    """Write ``metrics`` (plain Python values) to ``path`` atomically, every
    non-finite float as null with its reason (``reasons[key]``, else 'not a
    finite number (nan)') under ``null_reasons``. -> {key: reason} of the nulls."""
    found = []
    clean = _finite(metrics, '', found)
    nulls = {key: (reasons or {}).get(key) or 'not a finite number' for key in found}
    if nulls:
        clean['null_reasons'] = nulls
        from paddleseg.utils import logger
        for key, reason in nulls.items():
            logger.warning(f'{path}: {key} is undefined ({reason}); written as null')
    atomic_write_text(path, json.dumps(clean, indent=1, allow_nan=False))
    return nulls


def segmentation_nan_reasons(acc, kappa):
    """Why PaddleSeg's accuracy or kappa is NaN: no labelled pixel at all
    (0 / 0), or, for kappa alone, an expected agreement of 1 (labels and
    predictions hold one and the same class everywhere: (po - pe) / (1 - pe)
    is 0 / 0)."""
    if not math.isfinite(acc):
        empty = 'no pixel to score: every label pixel is the ignore index'
        return {'acc': empty, 'kappa': empty}
    if not math.isfinite(kappa):
        return {'kappa': 'labels and predictions are one and the same class everywhere, so the '
                         'agreement expected by chance is 1 and kappa is 0/0'}
    return {}


def write_segmentation_metrics(path, result):
    """``paddleseg.core.evaluate``'s (mIoU, Acc, class IoU, class precision,
    Kappa) as the JSON of ``tools/val.py --save_json``."""
    miou, acc, class_iou, class_precision, kappa = result
    return write_metrics_json(path, {
        'miou': float(miou), 'acc': float(acc), 'kappa': float(kappa),
        'class_iou': [float(v) for v in class_iou],
        'class_precision': [float(v) for v in class_precision]},
        segmentation_nan_reasons(float(acc), float(kappa)))
