"""PaddleSeg 2.8's ``paddleseg.core.evaluate``, with the sample errors of
checked datasets raised in the main thread.

Paddle's DataLoader (2.6 and 3.3) lets an exception in its reader thread
(``num_workers=0``) end that thread without waking the main one, which then
waits forever; so a dataset with a ``hand_off_errors`` switch (see
:mod:`paddle_pssl.datasets.target_labels`) passes its errors along in the
batch, and for the evaluation the loop's ``paddle`` is a view whose
``io.DataLoader`` raises them as each batch arrives. Everything else is
PaddleSeg's. Training with ``--do_eval`` uses the same view (see
:func:`checked_evaluation`).
"""
import contextlib
import importlib
import types

import paddle

from ..datasets.pssl import raise_sample_error

__all__ = ['evaluate', 'checked_evaluation']

seg_val_module = importlib.import_module('paddleseg.core.val')


class _CheckedLoader:
    """A DataLoader whose batches raise the errors they carry."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            raise_sample_error(batch)
            yield batch


class _EvalPaddle(types.ModuleType):
    """``paddle`` as PaddleSeg's evaluation sees it: all of it, with an
    ``io`` whose DataLoader is :class:`_CheckedLoader`."""

    def __init__(self):
        super().__init__('paddle')
        self.io = types.SimpleNamespace(
            **{n: getattr(paddle.io, n) for n in dir(paddle.io) if not n.startswith('_')})
        self.io.DataLoader = lambda *args, **kwargs: _CheckedLoader(paddle.io.DataLoader(*args, **kwargs))

    def __getattr__(self, name):
        return getattr(paddle, name)


@contextlib.contextmanager
def checked_evaluation(dataset):
    """While inside: ``dataset`` (when it has a ``hand_off_errors`` switch)
    hands its errors over in the batch and PaddleSeg's evaluation raises them."""
    if not hasattr(dataset, 'hand_off_errors'):
        yield
        return
    before = dataset.hand_off_errors
    dataset.hand_off_errors = True
    seg_val_module.paddle = _EvalPaddle()
    try:
        yield
    finally:
        seg_val_module.paddle = paddle
        dataset.hand_off_errors = before


def evaluate(model, eval_dataset, batch_size=1, **kwargs):
    """Same arguments and result as ``paddleseg.core.evaluate``, plus
    ``batch_size``: above 1 (and without aug_eval, is_slide or auc_roc),
    images are predicted in batches of consecutive samples that share their
    input size, label size and transform record, so each prediction is the
    one-image prediction (batch norm runs on its stored statistics) and the
    counts, hence every metric, are PaddleSeg's."""
    plain = not (kwargs.get('aug_eval') or kwargs.get('is_slide') or kwargs.get('auc_roc')
                 or kwargs.get('precision', 'fp32') != 'fp32')
    with checked_evaluation(eval_dataset):
        if batch_size <= 1 or not plain:
            return seg_val_module.evaluate(model, eval_dataset, **kwargs)
        return _batched(model, eval_dataset, batch_size, kwargs.get('num_workers', 0),
                        kwargs.get('print_detail', True))


def _runs(loader, batch_size):
    """Consecutive samples of one loader (batch 1) joined into batches of at
    most ``batch_size`` that share input shape, label shape and trans_info."""
    group, key = [], None
    for data in loader:
        this = (tuple(data['img'].shape), tuple(data['label'].shape), repr(data.get('trans_info')))
        if group and (this != key or len(group) == batch_size):
            yield group
            group = []
        group.append(data)
        key = this
    if group:
        yield group


def _batched(model, eval_dataset, batch_size, num_workers, print_detail):
    from paddleseg.core import infer
    from paddleseg.utils import logger, metrics
    model.eval()
    loader = seg_val_module.paddle.io.DataLoader(   # the checked loader inside checked_evaluation
        eval_dataset, batch_size=1, shuffle=False, num_workers=num_workers, return_list=True)
    totals = [paddle.zeros([1], dtype='int64') for _ in range(3)]
    if print_detail:
        logger.info(f'Start evaluating (total_samples: {len(eval_dataset)}, batches of up to '
                    f'{batch_size} same-size images)...')
    with paddle.no_grad():
        for group in _runs(loader, batch_size):
            images = paddle.concat([d['img'] for d in group])
            labels = paddle.concat([d['label'] for d in group]).astype('int64')
            pred, _ = infer.inference(model, images, trans_info=group[0]['trans_info'])
            areas = metrics.calculate_area(pred, labels, eval_dataset.num_classes,
                                           ignore_index=eval_dataset.ignore_index)
            totals = [t + a for t, a in zip(totals, areas)]
    class_iou, miou = metrics.mean_iou(*totals)
    acc, class_precision, _ = metrics.class_measurement(*totals)
    kappa = metrics.kappa(*totals)
    if print_detail:
        import numpy as np
        _, mdice = metrics.dice(*totals)
        logger.info(f'[EVAL] #Images: {len(eval_dataset)} mIoU: {miou:.4f} Acc: {acc:.4f} '
                    f'Kappa: {kappa:.4f} Dice: {mdice:.4f}')
        logger.info('[EVAL] Class IoU: \n' + str(np.round(class_iou, 4)))
        logger.info('[EVAL] Class Precision: \n' + str(np.round(class_precision, 4)))
    return miou, acc, class_iou, class_precision, kappa
