"""What the training loops (PaddleSeg's through :mod:`paddle_pssl.core`, the
classifier loop, M&M) do with a NaN or infinite loss: the config's
``on_nonfinite_loss``.

``stop`` (default): end the run at that iteration with one line naming it,
the batch's files where known, and the newest complete checkpoint (the
check runs before the backward pass, so every checkpoint on disk is from
before the bad step). ``skip``: leave the batch out (no optimizer step),
count it, log one warning line, and go on, as large-scale trainers do;
but if the weights themselves have stopped being finite the run stops
anyway, since every later batch would be skipped too.
"""
import math

from .checkpoint import newest_complete
from .errors import PSSLError

__all__ = ['ON_NONFINITE_LOSS', 'NonFiniteLoss', 'describe_files']

ON_NONFINITE_LOSS = ('stop', 'skip')
_SHOWN_FILES = 3


def describe_files(files):
    """``a, b, c and 5 more`` for the first files of a batch ('' for none)."""
    files = [str(f) for f in files or () if f]
    if not files:
        return ''
    more = len(files) - _SHOWN_FILES
    return ', '.join(files[:_SHOWN_FILES]) + (f' and {more} more' if more > 0 else '')


class NonFiniteLoss:
    """The rule of one run. ``check(value, iteration, files, weights)``
    returns True when the batch is to be skipped, raises PSSLError to stop,
    and returns False for a finite loss; ``weights`` (a callable -> named
    numpy arrays, asked for only on a skip) lets it tell a bad batch from
    weights gone bad."""

    def __init__(self, mode='stop', save_dir=None, with_state=False, key='on_nonfinite_loss'):
        if mode not in ON_NONFINITE_LOSS:
            raise PSSLError(f'{key} {mode!r}: must be one of {ON_NONFINITE_LOSS}')
        self.mode, self.save_dir, self.with_state, self.key = mode, save_dir, with_state, key
        self.skipped = 0

    def _where(self, value, iteration, files):
        batch = describe_files(files)
        return f'iter {iteration}: the loss is {value}' + (f' (batch: {batch})' if batch else '')

    def _stop(self, what):
        newest = newest_complete(self.save_dir, self.with_state) if self.save_dir else None
        kept = f'last complete checkpoint: {newest}' if newest else 'no checkpoint was saved yet'
        raise PSSLError(f'{what}; run stopped, {kept}')

    def check(self, value, iteration, files=(), weights=None):
        value = float(value)
        if math.isfinite(value):
            return False
        what = self._where(value, iteration, files)
        if self.mode == 'stop':
            self._stop(f'{what}; lower the learning rate, or set {self.key}: skip to leave '
                       f'such batches out')
        bad = next((name for name, array in (weights() if weights else ())
                    if not _finite(array)), None)
        if bad is not None:
            self._stop(f'{what} and the weights are no longer finite ({bad})')
        self.skipped += 1
        from paddleseg.utils import logger
        logger.warning(f'{what}; batch skipped ({self.skipped} so far, {self.key}: skip)')
        return True

    def summary(self):
        """The end-of-run warning, or None when nothing was skipped."""
        if not self.skipped:
            return None
        return f'{self.skipped} batch(es) skipped for a non-finite loss ({self.key}: skip)'


def _finite(array):
    import numpy as np
    return bool(np.isfinite(np.asarray(array)).all())
