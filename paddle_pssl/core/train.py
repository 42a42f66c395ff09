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
then ``model.pdopt`` with plain ``paddle.save`` and prunes with its own deque,
so a kill mid-save leaves a truncated file, or a folder with one file of the
pair, that ``--resume_model`` or fine-tuning then trips over. For the run, the
loop's ``paddle`` is a view of paddle whose ``save`` stages the files of
``iter_N/`` and commits them together through
:class:`~paddle_pssl.utils.checkpoint.Checkpoints` (which also keeps the last
``keep_checkpoint_max``), and writes any other file atomically. Its ``load``
is the allow-list reader (:mod:`paddle_pssl.utils.safe_load`), like the
``paddle`` that ``_paddleseg_compat`` gives PaddleSeg's ``resume``.

A bad training sample ends the run with its one-line error: datasets with a
``hand_off_errors`` switch (``WeightedPSSLDataset``, and PaddleSeg datasets
whose labels :mod:`paddle_pssl.datasets.target_labels` checks) pass their
errors along in the batch for the run, and the model's ``loss_computation``
(ours or its own, which PaddleSeg's loop calls with the whole batch) raises
them in the main thread, before the backward pass; see :func:`check_batches`.
The same hook checks that the loss is finite (the config's
``on_nonfinite_loss``, :mod:`paddle_pssl.utils.nonfinite`): ``stop`` ends the
run there, ``skip`` hands the loop zero losses and makes that iteration's
``optimizer.step`` a no-op.
"""
import importlib
import os
import types

import paddle

from ..datasets.pssl import SAMPLE_FILE, raise_sample_error
from .evaluate import checked_evaluation
from ..utils.checkpoint import Checkpoints, checkpoint_iteration, read_checkpoint, require_fit
from ..utils.errors import PSSLError
from ..utils.io import atomic_paddle_save
from ..utils.nonfinite import NonFiniteLoss
from ..utils.safe_load import SafeLoadPaddle

# ``paddleseg.core.train`` the attribute is the function; we need the module.
seg_train_module = importlib.import_module('paddleseg.core.train')

__all__ = ['train', 'attach_pixel_weight_hook', 'loss_computation', 'check_batches']


def loss_computation(logits_list, losses, data):
    """Like PaddleSeg's ``loss_computation`` but passes ``data['weight']``
    (when present) to pixel-weight-aware losses; losses come back [1]-shaped."""
    return [loss.reshape([1]) for loss in _loss_list(logits_list, losses, data)]


def _loss_list(logits_list, losses, data):
    labels = data['label'].astype('int64')
    edges = data['edge'].astype('int64') if 'edge' in data else None
    pixel_weight = data.get('weight')
    if len(logits_list) != len(losses['types']):
        # PaddleSeg's check_logits_losses says this in a RuntimeError at iter 1
        raise PSSLError(f"loss.types and loss.coef give {len(losses['types'])} loss(es), the "
                        f'model returns {len(logits_list)} output(s) (main head, then auxiliary '
                        'heads): give loss.types and loss.coef one entry per output')
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


def check_batches(model, dataset, optimizer=None, nonfinite=None, start_iter=0):
    """For one run: ``dataset`` (when it has a ``hand_off_errors`` switch)
    hands its sample errors over in the batch, and ``model.loss_computation``
    raises them before it computes a loss; then it applies ``nonfinite`` (a
    :class:`~paddle_pssl.utils.nonfinite.NonFiniteLoss`, None: stop) to the
    loss of iteration ``start_iter + 1, ...``, skipping ``optimizer.step``
    after a skipped batch. -> a function that undoes all of it."""
    nonfinite = nonfinite or NonFiniteLoss()
    hands_off = hasattr(dataset, 'hand_off_errors')
    had = 'loss_computation' in vars(model)
    before = vars(model).get('loss_computation')
    inner = model.loss_computation
    state = {'iter': int(start_iter), 'skip_step': False}

    def weights():
        return ((name, p.numpy()) for name, p in model.named_parameters())

    def checked(logits_list, losses, data):
        state['iter'] += 1
        if hands_off:
            raise_sample_error(data)
        loss_list = inner(logits_list, losses, data)
        files = data.get(SAMPLE_FILE) if isinstance(data, dict) else None
        if nonfinite.check(float(sum(loss_list)), state['iter'], files, weights):
            state['skip_step'] = True
            zeros = []
            for _ in loss_list:
                zero = paddle.zeros([1])
                zero.stop_gradient = False   # the loop calls backward() on the sum
                zeros.append(zero)
            return zeros
        return loss_list

    model.loss_computation = checked
    if hands_off:
        dataset.hand_off_errors = True
    step = getattr(optimizer, 'step', None)
    if step is not None:
        def guarded_step(*args, **kwargs):
            if state['skip_step']:
                state['skip_step'] = False
                return None
            return step(*args, **kwargs)
        optimizer.step = guarded_step

    def undo():
        if hands_off:
            dataset.hand_off_errors = False
        if had:
            model.loss_computation = before
        else:
            del model.loss_computation
        if step is not None:
            del optimizer.step
    return undo


class _LoopPaddle(SafeLoadPaddle):
    """``paddle`` as PaddleSeg's loop sees it during a run: all of it, with
    the safe ``load``, and a ``save`` that commits ``iter_N/`` checkpoints as
    a unit through ``checkpoints`` (None on ranks that save nothing) once
    every file of ``unit`` is written, and writes any other file atomically."""

    def __init__(self, checkpoints, unit, on_first_commit=None):
        super().__init__()
        self._checkpoints, self._unit, self._staging = checkpoints, unit, None
        self._on_first_commit = on_first_commit

    def save(self, obj, path, *args, **kwargs):
        iteration = None
        if self._checkpoints is not None and not (args or kwargs) and \
                os.path.basename(path) in self._unit:
            iteration = self._checkpoints.iteration_of(path)
        if iteration is None:
            if args or kwargs:
                return paddle.save(obj, path, *args, **kwargs)
            return atomic_paddle_save(obj, path)
        if self._staging is not None and self._staging.iteration != iteration:
            self.abort()
        if self._staging is None:
            self._staging = self._checkpoints.stage(iteration)
        staging = self._staging
        try:
            paddle.save(obj, staging.file(os.path.basename(path)))
        except BaseException:
            self.abort()
            raise
        if all(staging.has(name) for name in self._unit):
            self._staging = None
            staging.commit()
            if self._on_first_commit is not None:
                first, self._on_first_commit = self._on_first_commit, None
                first()

    def abort(self):
        """Drop a checkpoint whose files did not all arrive."""
        if self._staging is not None:
            self._staging.abort()
            self._staging = None


def train(model, train_dataset, on_nonfinite_loss='stop', on_first_checkpoint=None, **kwargs):
    """Same arguments as ``paddleseg.core.train``, plus ``on_nonfinite_loss``
    ('stop' or 'skip', see :mod:`paddle_pssl.utils.nonfinite`) and
    ``on_first_checkpoint``, called once after the run's first checkpoint is
    committed (files that describe the run, written only once it saved)."""
    batch_size = kwargs.get('batch_size', 2)
    nranks = paddle.distributed.ParallelEnv().nranks
    if len(train_dataset) < batch_size * nranks:
        # PaddleSeg drops the last incomplete batch: with no full batch its
        # loop would spin forever without training.
        raise PSSLError(f'train_dataset has {len(train_dataset)} samples, fewer than '
                        f'batch_size {batch_size} x {nranks} device(s): no full batch')
    if on_nonfinite_loss == 'skip' and nranks > 1:
        raise PSSLError('on_nonfinite_loss: skip runs in one process (each device would skip '
                        'other steps); use stop with paddle.distributed.launch')
    start_iter = 0
    if kwargs.get('resume_model') is not None:
        # the loop reads N from the folder name and both files
        resume = kwargs['resume_model']
        # both files read here: a truncated one is named with the newest whole checkpoint
        ckpt = read_checkpoint(resume, flag='--resume_model', need_name=True)
        # PaddleSeg's resume would warn about a model that does not fit, then
        # fail in the optimizer's state with an AssertionError
        require_fit(os.path.join(resume, 'model.pdparams'), ckpt.params, model, '--resume_model')
        start_iter = checkpoint_iteration(resume)
    checkpoints = None
    if paddle.distributed.ParallelEnv().local_rank == 0:  # the rank the loop saves on
        checkpoints = Checkpoints(kwargs.get('save_dir', 'output'),
                                  keep=kwargs.get('keep_checkpoint_max', 5))
        if kwargs.get('resume_model') is None:
            checkpoints.refuse_earlier_run('--resume_model', model_dirs=True)
    unit = ('model.pdparams', 'model.pdopt') + (
        ('ema_model.pdparams',) if kwargs.get('use_ema') else ())
    # 0 turns the loop's own pruning off (``len > keep > 0``); the helper prunes
    kwargs['keep_checkpoint_max'] = 0
    attached = attach_pixel_weight_hook(model)
    nonfinite = NonFiniteLoss(on_nonfinite_loss, kwargs.get('save_dir', 'output'))
    unchecked = check_batches(model, train_dataset, kwargs.get('optimizer'), nonfinite, start_iter)
    loop_paddle = _LoopPaddle(checkpoints, unit, on_first_checkpoint)
    seg_train_module.paddle = loop_paddle
    try:
        with checked_evaluation(kwargs.get('val_dataset')):
            seg_train_module.train(model, train_dataset, **kwargs)
    finally:
        loop_paddle.abort()
        seg_train_module.paddle = paddle
        unchecked()
        if attached:
            del model.loss_computation
    if nonfinite.summary():
        from paddleseg.utils import logger
        logger.warning(nonfinite.summary())
