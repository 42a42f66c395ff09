"""Weighted cross-entropy for PSSL pre-training.

    loss = sum_i w_i * CE_i / sum_i w_i   over non-ignored pixels i,
    w_i  = class_weight[y_i] * pixel_weight_i   (pixel_weight optional, default 1)

Upstream's recipe weights every class 1.0 and the background (id 1000) 0.1.
In every label space of a store (``paddle_pssl.pseudo_labels.store.LabelSpace``)
the background is the last output, which is the default ``background_index``.
The per-pixel weight is the ensemble's confidence map from the label store; it
reaches the loss through ``paddle_pssl.core.train`` (PaddleSeg 2.8 hands a loss
only the label, see ``paddle_pssl/core/train.py``).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager


def pixel_cross_entropy(logit, label, ignore_index):
    """Per-pixel CE and validity mask.

    logit [N, C, H, W], label [N, H, W] int64 -> (ce [N, H, W] float32, valid [N, H, W] bool).
    Ignored pixels get a safe class 0 so that ids >= C (PSSL's ignore 1001) never index the logits.
    """
    if label.ndim == 4:
        label = label.squeeze(1)
    label = label.astype('int64')
    valid = label != ignore_index
    safe_label = paddle.where(valid, label, paddle.zeros_like(label))
    logit = logit.transpose([0, 2, 3, 1])
    ce = F.cross_entropy(
        logit, safe_label.unsqueeze(-1), reduction='none', axis=-1)
    return ce.squeeze(-1), valid


def weighted_pixel_mean(values, label, valid, class_weight=None,
                        pixel_weight=None, eps=1e-8):
    """sum(w * values) / sum(w) with w = class_weight[label] * pixel_weight * valid."""
    weight = valid.astype(values.dtype)
    if class_weight is not None:
        safe_label = paddle.where(valid, label.astype('int64'),
                                  paddle.zeros_like(label, dtype='int64'))
        weight = weight * paddle.gather(class_weight, safe_label.flatten()
                                        ).reshape(safe_label.shape)
    if pixel_weight is not None:
        if pixel_weight.ndim == 4:
            pixel_weight = pixel_weight.squeeze(1)
        weight = weight * pixel_weight.astype(values.dtype)
    weight = weight.detach()
    return (values * weight).sum() / (weight.sum() + eps)


class PixelWeightedLoss(nn.Layer):
    """Base for losses that accept a per-pixel weight map from the batch.

    ``paddle_pssl.core.train`` passes ``pixel_weight=data['weight']`` to losses
    whose ``accepts_pixel_weight`` is True; other PaddleSeg losses are untouched.
    """
    accepts_pixel_weight = True

    def __init__(self, weight=None, background_weight=None,
                 background_index=None, ignore_index=255, eps=1e-8):
        super().__init__()
        self.ignore_index = ignore_index
        self.eps = eps
        self.background_index = background_index
        self.background_weight = background_weight
        self._explicit_weight = weight
        self.class_weight = None
        if weight is not None:
            self.class_weight = paddle.to_tensor(weight, dtype='float32')

    def _class_weight(self, num_classes):
        if self.class_weight is not None:
            if self.class_weight.shape[0] != num_classes:
                raise ValueError(
                    f'{type(self).__name__}: weight has {self.class_weight.shape[0]} '
                    f'entries but the model outputs {num_classes} classes')
            return self.class_weight
        if self.background_weight is None:
            return None
        background = num_classes - 1 if self.background_index is None else self.background_index
        if not 0 <= background < num_classes:
            raise ValueError(
                f'{type(self).__name__}: background_index {background} '
                f'is outside the {num_classes} output classes')
        weight = paddle.ones([num_classes], dtype='float32')
        weight[background] = float(self.background_weight)
        self.class_weight = weight
        return weight

    def per_pixel_loss(self, logit, label):
        """[N, H, W] loss before weighting, and the validity mask."""
        return pixel_cross_entropy(logit, label, self.ignore_index)

    def forward(self, logit, label, pixel_weight=None):
        values, valid = self.per_pixel_loss(logit, label)
        if label.ndim == 4:
            label = label.squeeze(1)
        return weighted_pixel_mean(values, label, valid,
                                   self._class_weight(logit.shape[1]),
                                   pixel_weight, self.eps)


@manager.LOSSES.add_component
class PSSLCrossEntropyLoss(PixelWeightedLoss):
    """Cross-entropy with class weights and optional per-pixel weights.

    Args:
        weight (list[float], optional): one weight per class (PaddleSeg's form).
        background_weight (float, optional): shorthand for "every class 1.0,
            background ``background_weight``" (upstream PSSL: 0.1).
        background_index (int, optional): the background id; default the last
            output (upstream's space: 1000; compact: K).
        ignore_index (int): label id that gives no loss (upstream's space:
            1001; compact and objectness: 255).
    """
