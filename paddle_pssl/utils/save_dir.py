"""Claiming a training ``save_dir`` for one run, for every training tool
(``tools/train.py`` with its M&M stage, ``tools/train_cls.py``).

:func:`claim_save_dir` runs before any work:

- A fresh run (no ``--resume_model`` / ``--resume``) into a ``save_dir`` that
  holds what an earlier run wrote there (``iter_<n>/`` checkpoints, complete
  or not, ``best_model/``, a classifier's ``model.pdparams`` and
  ``train_cls.json``) is refused with one line saying what is there and the
  three ways on: resume it, choose another ``--save_dir``, or pass
  ``--overwrite``, which deletes that run (with its VisualDL records) and
  says so in one line. A resumed run whose checkpoint lies in another folder
  is refused the same way when ``save_dir`` holds a third run's files.
- One run per folder: ``<save_dir>/.run.lock``
  (:class:`~.run_lock.RunLock`: pid, host, start time) refuses a second
  concurrent run in one line; a stale lock of this host is taken over with a
  warning, another host's with ``--break_lock``.

Nothing is deleted unless ``--overwrite`` asks. Claims are re-entrant in a
process; under ``paddle.distributed.launch`` only rank 0 claims. The training
loops call :func:`require_no_earlier_run` where they used to clear the folder:
for a claimed folder it is a no-op, for an unclaimed one (the library
called directly) it refuses as the claim would.
"""
import contextlib
import os
import re

from .checkpoint import (CLAIMED, CLASSIFIER_OUTPUTS, TRAIN_OUTPUTS, _remove_tree, _work_dir,
                         checkpoint_iteration, earlier_run, earlier_run_refusal, is_rank0,
                         require_no_earlier_run, shown)
from .errors import PSSLError

__all__ = ['LOCK_NAME', 'TRAIN_OUTPUTS', 'CLASSIFIER_OUTPUTS', 'claim_save_dir', 'earlier_run',
           'require_no_earlier_run']

LOCK_NAME = '.run.lock'
_VDL_RECORD = re.compile(r'vdlrecords\.\d+\.log$')


def _inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _remove(save_dir, names):
    """Delete ``names`` of ``save_dir`` and the folder's VisualDL records; a
    checkpoint is renamed away first, so a kill leaves no half ``iter_<n>``."""
    records = sorted(n for n in os.listdir(save_dir) if _VDL_RECORD.match(n))
    for name in names + records:
        path = os.path.join(save_dir, name)
        if os.path.isdir(path):
            n = checkpoint_iteration(name)
            if n is not None:
                doomed = _work_dir(save_dir, 'del', n)
                os.rename(path, doomed)
                path = doomed
            _remove_tree(path)
        elif os.path.lexists(path):
            os.remove(path)
    return names + records


def _check(save_dir, resume, resume_flag, overwrite, outputs, with_state):
    names = earlier_run(save_dir, outputs)
    if resume is not None and _inside(resume, save_dir):
        if overwrite:
            raise PSSLError(f'{resume_flag} {resume}: --overwrite would delete the run it continues; '
                            f'pass one of {resume_flag} and --overwrite')
        return
    if not names:
        return
    if not overwrite:
        raise earlier_run_refusal(save_dir, names, resume, resume_flag, with_state)
    removed = _remove(save_dir, names)
    from paddleseg.utils import logger
    logger.warning(f'{save_dir}: --overwrite: deleted the earlier run ({shown(removed)})')


@contextlib.contextmanager
def claim_save_dir(save_dir, resume=None, resume_flag='--resume_model', overwrite=False,
                   break_lock=False, outputs=TRAIN_OUTPUTS, with_state=False):
    """Hold ``save_dir`` for one run (see the module docstring): make it,
    take its lock, refuse or (``overwrite``) delete an earlier run's files
    (``outputs`` besides ``iter_<n>/``; ``with_state``: the loop's
    checkpoints need ``state.json`` to resume). A folder this call made is
    removed again if the run leaves it empty."""
    if os.path.exists(save_dir) and not os.path.isdir(save_dir):
        raise PSSLError(f'{save_dir}: --save_dir is a file, not a folder')
    key = os.path.realpath(save_dir)
    if key in CLAIMED or not is_rank0():
        CLAIMED[key] = CLAIMED.get(key, 0) + 1
        try:
            yield
        finally:
            CLAIMED[key] -= 1
            if not CLAIMED[key]:
                del CLAIMED[key]
        return
    made = not os.path.isdir(save_dir)
    try:
        os.makedirs(save_dir, exist_ok=True)
    except OSError as e:
        raise PSSLError(f'{save_dir}: cannot make --save_dir ({e.strerror or type(e).__name__})')
    from .run_lock import RunLock
    lock = RunLock(os.path.join(save_dir, LOCK_NAME), 'another run is writing to this save_dir:',
                   break_lock, wait='wait for it to end or choose another --save_dir')
    try:
        try:
            lock.acquire()
        except OSError as e:
            raise PSSLError(f'{save_dir}: cannot write in --save_dir ({e.strerror or type(e).__name__})')
        CLAIMED[key] = 1
        try:
            _check(save_dir, resume, resume_flag, overwrite, outputs, with_state)
            yield
        finally:
            del CLAIMED[key]
            lock.release()
    finally:
        if made:
            with contextlib.suppress(OSError):
                os.rmdir(save_dir)   # only when empty
