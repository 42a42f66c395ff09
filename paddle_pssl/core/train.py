"""The project's trainer: PaddleSeg 2.8's own ``paddleseg.core.train``, with
per-pixel weights routed to the losses that take them.

PaddleSeg's loop hands a loss only ``(logits, label)``, but before that it asks
the model: if the model has ``loss_computation(logits_list, losses, data)`` the
loop calls it with the whole batch. We attach such a method to the model for
the run, so the batch's ``weight`` map (the label store's confidence) reaches
losses whose ``accepts_pixel_weight`` is True. Logging, checkpoints,
evaluation, VisualDL and resume stay PaddleSeg's.

Shim for paddleseg 2.8.0 on paddlepaddle 2.6: the loop logs ``l.numpy()[0]``
for every loss, written for Paddle <= 2.4 where a mean was a [1] tensor; in
2.6 losses are 0-D and that indexing raises IndexError at the first log line,
even with PaddleSeg's own CrossEntropyLoss. The hook returns [1]-shaped losses.

Shim for paddleseg 2.8.0's checkpoints: the loop writes ``iter_N/model.pdparams``
and ``.pdopt`` with plain ``paddle.save``, so a kill mid-save leaves a truncated
file that ``--resume_model`` or fine-tuning then trips over. For the run, the
loop's ``paddle`` is a view of paddle whose ``save`` goes through a temporary
file and a rename.
"""
import importlib
import types

import paddle

from ..utils.errors import PSSLError
from ..utils.io import atomic_paddle_save

# ``paddleseg.core.train`` the attribute is the function; we need the module.
seg_train_module = importlib.import_module('paddleseg.core.train')

__all__ = ['train', 'attach_pixel_weight_hook', 'loss_computation']


def loss_computation(logits_list, losses, data):
    """Like PaddleSeg's ``loss_computation`` but passes ``data['weight']``
    (when present) to pixel-weight-aware losses; losses come back [1]-shaped."""
    return [loss.reshape([1]) for loss in _loss_list(logits_list, losses, data)]


def _loss_list(logits_list, losses, data):
    labels = data['label'].astype('int64')
    edges = data['edge'].astype('int64') if 'edge' in data else None
    pixel_weight = data.get('weight')
    seg_train_module.check_logits_losses(logits_list, losses)
    if pixel_weight is None:
        return seg_train_module.loss_computation(logits_list, labels, edges,
                                                 losses)
    loss_list = []
    for logits, loss_i, coef_i in zip(logits_list, losses['types'],
                                      losses['coef']):
        if getattr(loss_i, 'accepts_pixel_weight', False):
            loss_list.append(coef_i * loss_i(logits, labels,
                                             pixel_weight=pixel_weight))
        else:
            loss_list.extend(
                seg_train_module.loss_computation(
                    [logits], labels, edges, {'types': [loss_i],
                                              'coef': [coef_i]}))
    return loss_list


def attach_pixel_weight_hook(model):
    """Give ``model`` a ``loss_computation`` method unless it has its own
    (e.g. MaskFormer); returns True when attached."""
    if hasattr(model, 'loss_computation'):
        return False
    model.loss_computation = types.MethodType(
        lambda self, logits_list, losses, data: loss_computation(
            logits_list, losses, data), model)
    return True


class _PaddleAtomicSave(types.ModuleType):
    """``paddle`` as PaddleSeg's loop sees it during a run: all of it, with an
    atomic ``save``."""

    def __init__(self):
        super().__init__('paddle')

    def __getattr__(self, name):
        return getattr(paddle, name)

    @staticmethod
    def save(obj, path, *args, **kwargs):
        if args or kwargs:
            return paddle.save(obj, path, *args, **kwargs)
        return atomic_paddle_save(obj, path)


def train(model, train_dataset, **kwargs):
    """Same arguments as ``paddleseg.core.train``."""
    batch_size = kwargs.get('batch_size', 2)
    nranks = paddle.distributed.ParallelEnv().nranks
    if len(train_dataset) < batch_size * nranks:
        # PaddleSeg drops the last incomplete batch: with no full batch its
        # loop would spin forever without training.
        raise PSSLError(f'train_dataset has {len(train_dataset)} samples, fewer than '
                        f'batch_size {batch_size} x {nranks} device(s): no full batch')
    attached = attach_pixel_weight_hook(model)
    seg_train_module.paddle = _PaddleAtomicSave()
    try:
        seg_train_module.train(model, train_dataset, **kwargs)
    finally:
        seg_train_module.paddle = paddle
        if attached:
            del model.loss_computation
