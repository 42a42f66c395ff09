"""Shims for paddleseg 2.8.0 on paddlepaddle 2.6 and 3.3.

Evaluation (both versions):
``paddleseg.utils.metrics.calculate_area`` builds per-class counts with
``paddle.concat`` of ``paddle.sum`` results; Paddle 2.6 returns 0-D tensors
there and ``concat`` of 0-D tensors raises "The axis is expected to be in range
of [0, 0)", so ``paddleseg.core.evaluate`` fails on its first image. We replace
it with a bincount version returning the same [num_classes] int64 counts.
(The training-loop counterpart is in ``paddle_pssl/core/train.py``.)

Losses (Paddle 3 only): ``CrossEntropyLoss._post_process_loss`` multiplies an
int64 tensor by a float32 one. Paddle 2.6 silently cast the right operand to
the left one's dtype; Paddle 3 refuses ("Type promotion only support
calculations between floating-point numbers"), so every PaddleSeg
CrossEntropyLoss fails. ``post_process_loss`` makes those two casts explicit,
with the dtypes Paddle 2.6 chose; it is installed only on Paddle >= 3.
"""
import paddle
import paddle.nn.functional as F
from paddleseg.models.losses import cross_entropy_loss
from paddleseg.utils import metrics


def paddle_major():
    """Paddle's major version; develop builds ("0.0.0") count as newest."""
    major = int(paddle.__version__.split('.')[0])
    return major if major > 0 else 99


PADDLE3 = paddle_major() >= 3


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


def post_process_loss(self, logit, label, semantic_weights, loss):
    """PaddleSeg 2.8's ``CrossEntropyLoss._post_process_loss`` with explicit casts:
    mask-averaged (or top-k) loss, optionally weighted per pixel and per class."""
    if self.avg_non_ignore:
        mask = paddle.cast(label != self.ignore_index, dtype='float32')
    else:
        mask = paddle.ones(label.shape, dtype='float32')
    mask.stop_gradient = True
    label.stop_gradient = True
    if loss.ndim > mask.ndim:
        loss = paddle.squeeze(loss, axis=-1)
    loss = loss * mask
    if semantic_weights is not None:
        loss = loss * semantic_weights
    if self.weight is not None:
        # int64 label x {0, 1} mask: ignored pixels index class 0 (weight
        # masked out below), as on Paddle 2.6
        _one_hot = F.one_hot(label * mask.astype(label.dtype), logit.shape[-1])
        coef = paddle.sum(_one_hot * self.weight, axis=-1)
    else:
        coef = paddle.ones_like(label)
    if self.top_k_percent_pixels == 1.0:
        return paddle.mean(loss) / (paddle.mean(mask * coef.astype(mask.dtype)) + self.EPS)
    loss = loss.reshape((-1, ))
    top_k_pixels = int(self.top_k_percent_pixels * loss.numel())
    loss, indices = paddle.topk(loss, top_k_pixels)
    coef = paddle.gather(coef.reshape((-1, )), indices)
    coef.stop_gradient = True
    coef = coef.astype('float32')
    return loss.mean() / (paddle.mean(coef) + self.EPS)


if PADDLE3:
    cross_entropy_loss.CrossEntropyLoss._post_process_loss = post_process_loss


# Shim for paddleseg 2.8.0's weight loading (all Paddle versions): its
# ``load_pretrained_model`` (``model.pretrained``/``backbone.pretrained`` of
# every model, ``load_entire_model`` of val/predict/export/relabel) and
# ``resume`` (the training loop's ``--resume_model``) call plain ``paddle.load``,
# which runs whatever code a crafted pickle names; so do the ViT and CAE
# backbones. Those modules get a ``paddle`` whose ``load`` is the project's
# allow-list reader, and a ``pretrained:`` URL is fetched by PaddleSeg's
# downloader with the guards of ``paddle_pssl.utils.fetch``.
import importlib  # noqa: E402
import os  # noqa: E402
from urllib.parse import urlparse  # noqa: E402

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


# Shim for paddleseg 2.8.0's ``load_pretrained_model`` (all Paddle versions):
# it loads by shape and, when nothing fits (another model's file, or a
# classifier's weights given as ``backbone.pretrained``), logs one line per
# parameter and "There are 0/115 variables loaded", then training goes on
# from random weights. Its behaviour stays (skip and log); a local file that
# fits almost none of the model's parameters is refused first, in one line
# (:func:`paddle_pssl.utils.checkpoint.require_pretrained_fit`).
from .core.pretraining_head import keep_output_layer  # noqa: E402
from .utils.checkpoint import require_pretrained_fit  # noqa: E402
from paddleseg.utils import logger as _seg_logger  # noqa: E402
from .utils.safe_load import safe_load  # noqa: E402

_seg_utils = importlib.import_module('paddleseg.utils.utils')
_load_pretrained_model = _seg_utils.load_pretrained_model


def load_pretrained_model(model, pretrained_model):
    if isinstance(pretrained_model, str) and urlparse(pretrained_model).netloc:
        pretrained_model = fetch_pretrained(pretrained_model)
    kept = {}
    if isinstance(pretrained_model, str) and os.path.isfile(pretrained_model):
        # a segmentation model has a backbone; a backbone is one
        key = 'model.pretrained' if hasattr(model, 'backbone') else 'backbone.pretrained'
        require_pretrained_fit(pretrained_model, safe_load(pretrained_model), model, key)
        kept = keep_output_layer(model, pretrained_model)
    result = _load_pretrained_model(model, pretrained_model)
    if kept:
        # a compact/objectness pre-training's output layer: its classes are not the task's
        state = model.state_dict()
        for name, value in kept.items():
            state[name].set_value(value)
        _seg_logger.info(f'{pretrained_model}: kept the random init of the pre-training output '
                         f"layer ({', '.join(sorted(kept))}; core/pretraining_head.py)")
    return result


_seg_utils.load_pretrained_model = load_pretrained_model
