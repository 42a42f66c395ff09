"""Shim for paddleseg 2.8.0 on paddlepaddle 2.6: evaluation.

``paddleseg.utils.metrics.calculate_area`` builds per-class counts with
``paddle.concat`` of ``paddle.sum`` results; Paddle 2.6 returns 0-D tensors
there and ``concat`` of 0-D tensors raises "The axis is expected to be in range
of [0, 0)", so ``paddleseg.core.evaluate`` fails on its first image. We replace
it with a bincount version returning the same [num_classes] int64 counts.
(The training-loop counterpart is in ``paddle_pssl/core/train.py``.)
"""
import paddle
from paddleseg.utils import metrics


def calculate_area(pred, label, num_classes, ignore_index=255):
    """(intersect, pred, label) pixel counts per class, as PaddleSeg defines them:
    pred and intersect counts exclude ignored pixels; label counts do not need to."""
    if len(pred.shape) == 4:
        pred = paddle.squeeze(pred, axis=1)
    if len(label.shape) == 4:
        label = paddle.squeeze(label, axis=1)
    if pred.shape != label.shape:
        raise ValueError(f'Shape of `pred` and `label should be equal, but there '
                         f'are {pred.shape} and {label.shape}.')
    pred = pred.astype('int64').flatten()
    label = label.astype('int64').flatten()
    valid = label != ignore_index
    in_range = paddle.logical_and(label >= 0, label < num_classes)

    def count(values):
        if values.shape[0] == 0:
            return paddle.zeros([num_classes], dtype='int64')
        return paddle.bincount(values, minlength=num_classes)[:num_classes].astype('int64')

    pred_valid = paddle.masked_select(pred, valid)
    label_known = paddle.masked_select(label, in_range)
    hit = paddle.logical_and(valid, pred == label)
    return (count(paddle.masked_select(pred, hit)), count(pred_valid),
            count(label_known))


metrics.calculate_area = calculate_area


# Shim for paddleseg 2.8.0's weight loading (all Paddle versions): its
# ``load_pretrained_model`` (``model.pretrained``/``backbone.pretrained`` of
# every model, ``load_entire_model`` of val/predict/export/relabel) and
# ``resume`` (the training loop's ``--resume_model``) call plain ``paddle.load``,
# which runs whatever code a crafted pickle names; so do the ViT and CAE
# backbones. Those modules get a ``paddle`` whose ``load`` is the project's
# allow-list reader, and a ``pretrained:`` URL is fetched by PaddleSeg's
# downloader with the guards of ``paddle_pssl.utils.fetch``.
import importlib  # noqa: E402

from .utils.fetch import fetch_pretrained  # noqa: E402
from .utils.safe_load import SafeLoadPaddle  # noqa: E402

_SAFE_PADDLE = SafeLoadPaddle()
for _name in ('paddleseg.utils.utils', 'paddleseg.models.backbones.vision_transformer',
              'paddleseg.models.backbones.cae'):
    importlib.import_module(_name).paddle = _SAFE_PADDLE
# ``utils.download_pretrained_model`` for the ViT/CAE backbones, the module
# global for ``load_pretrained_model``
for _name in ('paddleseg.utils', 'paddleseg.utils.utils'):
    importlib.import_module(_name).download_pretrained_model = fetch_pretrained
