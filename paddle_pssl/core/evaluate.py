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


def evaluate(model, eval_dataset, **kwargs):
    """Same arguments and result as ``paddleseg.core.evaluate``."""
    with checked_evaluation(eval_dataset):
        return seg_val_module.evaluate(model, eval_dataset, **kwargs)
