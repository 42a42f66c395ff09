"""Training checkpoints ``<save_dir>/iter_<n>/`` shared by every training loop.

A checkpoint holds ``model.pdparams`` and ``model.pdopt`` (and, for loops
that need more to resume, ``state.json``). Its files are written into a
staging folder ``<save_dir>/.tmp_new_iter_<n>.<hex>`` that is then renamed to
``iter_<n>``, so an ``iter_<n>`` folder only ever appears with all of its
files written, and old ones are renamed away before they are deleted: a kill
at any instant leaves only complete checkpoints, those from before the save
or those plus the new one, some old ones perhaps already pruned. (Replacing
an ``iter_<n>`` that exists takes two renames; a kill between them is rolled
back by the next :class:`Checkpoints`.) A checkpoint is *complete* when its folder
is named ``iter_<n>`` and holds both model files (and ``state.json`` where the
loop asks for it); folders that do not pass (an empty ``iter_<n>`` from
PaddleSeg's ``makedirs``, a hand-copied partial one) are ignored by
keep-last-N and :func:`newest_complete`, and refused by :func:`read_checkpoint`.

A fresh run (one that resumes nothing) never meets an earlier run's
``iter_<n>`` folders in its ``save_dir``: the tools claim the folder first
(:mod:`~paddle_pssl.utils.save_dir`: refused, or deleted with
``--overwrite``), and :meth:`Checkpoints.refuse_earlier_run` refuses an
unclaimed one; otherwise keep-last-N and "the newest ``iter_<n>``" would mix
the two runs.

A checkpoint that cannot be read (a truncated file, a missing one) is named
with the newest whole checkpoint beside it (:func:`newest_whole`), which
:func:`read_checkpoint` checks by reading it.

Leftovers of a killed save (staging folders, model files' ``.tmp_*``
temporaries of :func:`~paddle_pssl.utils.io.atomic_paddle_save`) are removed when a
:class:`Checkpoints` is next made for that folder. One process writes to a
``save_dir`` at a time (the claim's lock).
"""
import json
import os
import re
import shutil
from collections import namedtuple

from .errors import PSSLError
from .io import json_default
# the fit of weights to a model: here for the loops that import them with the checkpoints
from .model_fit import (first_mismatch, load_trained, require_fit,  # noqa: F401
                        require_pretrained_fit, strict_model_path)

__all__ = ['Checkpoints', 'Checkpoint', 'PARAMS', 'OPTIMIZER', 'STATE', 'checkpoint_iteration',
           'is_complete', 'complete_checkpoints', 'newest_complete', 'newest_whole',
           'require_complete', 'read_checkpoint', 'first_mismatch', 'require_fit',
           'require_pretrained_fit', 'load_trained', 'strict_model_path']

PARAMS, OPTIMIZER, STATE = 'model.pdparams', 'model.pdopt', 'state.json'
_NAME = re.compile(r'iter_(\d+)$')
# staging ('new'), moved aside while replaced ('old'), being deleted ('del')
_WORK = re.compile(r'\.tmp_(new|old|del)_iter_(\d+)\.[0-9a-f]+$')

Checkpoint = namedtuple('Checkpoint', 'directory iteration params optimizer state')


def checkpoint_iteration(directory):
    """``n`` of a folder named ``iter_<n>``, else None."""
    found = _NAME.match(os.path.basename(os.path.normpath(directory)))
    return int(found.group(1)) if found else None


def _required(with_state):
    return (PARAMS, OPTIMIZER, STATE) if with_state else (PARAMS, OPTIMIZER)


def _missing(directory, with_state):
    return [n for n in _required(with_state) if not os.path.isfile(os.path.join(directory, n))]


def is_complete(directory, with_state=False):
    return (checkpoint_iteration(directory) is not None and os.path.isdir(directory)
            and not _missing(directory, with_state))


def complete_checkpoints(save_dir, with_state=False):
    """[(n, path)] of the complete checkpoints in ``save_dir``, oldest first."""
    if not os.path.isdir(save_dir):
        return []
    found = []
    for name in os.listdir(save_dir):
        path = os.path.join(save_dir, name)
        if _NAME.match(name) and is_complete(path, with_state):
            found.append((checkpoint_iteration(name), path))
    return sorted(found)


def newest_complete(save_dir, with_state=False):
    """Path of the complete checkpoint with the highest ``n`` in ``save_dir``, or None."""
    found = complete_checkpoints(save_dir, with_state)
    return found[-1][1] if found else None


def _read_files(directory, with_state):
    """(params, optimizer state, state or None) of a checkpoint folder."""
    from .safe_load import safe_load
    state = None
    if with_state:
        path = os.path.join(directory, STATE)
        try:
            with open(path) as f:
                state = json.load(f)
        except ValueError as e:
            raise PSSLError(f'{path}: not a readable checkpoint state ({e})') from None
    return (safe_load(os.path.join(directory, PARAMS)),
            safe_load(os.path.join(directory, OPTIMIZER)), state)


def newest_whole(save_dir, with_state=False, besides=None, tries=3):
    """The newest complete checkpoint of ``save_dir`` (other than
    ``besides``) whose files read, trying at most ``tries`` from the newest
    down; None when there is none."""
    besides = os.path.realpath(besides) if besides else None
    tried = 0
    for _, path in reversed(complete_checkpoints(save_dir, with_state)):
        if os.path.realpath(path) == besides:
            continue
        if tried == tries:
            return None
        tried += 1
        try:
            _read_files(path, with_state)
        except (PSSLError, OSError):
            continue
        return path
    return None


def _beside(directory, with_state):
    newest = newest_whole(os.path.dirname(directory), with_state, besides=directory)
    return f'newest whole checkpoint beside it: {newest}' if newest else \
        'no whole checkpoint beside it'


def require_complete(directory, with_state=False, flag='--resume', need_name=False):
    """Raise PSSLError (one line, naming ``directory``) unless it is a complete
    checkpoint; ``need_name``: the loop reads ``n`` from the folder name."""
    directory = os.path.normpath(directory)
    if not os.path.isdir(directory):
        raise PSSLError(f'{directory}: {flag} directory not found')
    if need_name and checkpoint_iteration(directory) is None:
        raise PSSLError(f'{directory}: {flag} needs an iter_<n> checkpoint directory')
    missing = _missing(directory, with_state)
    if missing:
        raise PSSLError(f'{directory}: incomplete checkpoint ({", ".join(missing)} missing), '
                        f'cannot {flag} from it; {_beside(directory, with_state)}')


def read_checkpoint(directory, with_state=False, flag='--resume', need_name=False):
    """Load a complete checkpoint -> :data:`Checkpoint` (``state`` is None
    without ``with_state``; ``iteration`` from the folder name, or None). A
    file that does not read is named with the newest whole checkpoint beside it."""
    require_complete(directory, with_state, flag, need_name)
    try:
        params, optimizer, state = _read_files(directory, with_state)
    except PSSLError as e:   # keeps its kind (e.g. UnsafePickleError), one line longer
        e.args = (f'{e}; cannot {flag} from it; {_beside(os.path.normpath(directory), with_state)}',)
        raise
    return Checkpoint(os.path.normpath(directory), checkpoint_iteration(directory),
                      params, optimizer, state)


# Where the loops write model files with atomic_paddle_save besides iter_<n>/;
# only model temporaries are swept, so a save_dir shared with other tools
# (the default ./output) keeps their in-flight files.
_MODEL_DIRS = ('best_model', 'ema_best_model')
_MODEL_SUFFIXES = ('.pdparams', '.pdopt')

# ------------------------------------------------ earlier runs in a save_dir
# What a run writes besides iter_<n>/: PaddleSeg's loop (train.py, M&M) ...
TRAIN_OUTPUTS = _MODEL_DIRS
# ... and the classifier loop (tools/train_cls.py)
CLASSIFIER_OUTPUTS = ('model.pdparams', 'train_cls.json')
# real path of each save_dir claimed in this process -> nesting depth
# (:func:`paddle_pssl.utils.save_dir.claim_save_dir` keeps it)
CLAIMED = {}


def is_rank0():
    # ParallelEnv().rank without importing paddle: what paddle.distributed.launch sets
    return int(os.environ.get('PADDLE_TRAINER_ID', '0') or 0) == 0


def _run_order(name):
    n = checkpoint_iteration(name)
    return (0, n, name) if n is not None else (1, 0, name)


def earlier_run(save_dir, outputs=TRAIN_OUTPUTS):
    """Names in ``save_dir`` that a run wrote: ``iter_<n>`` folders (oldest
    first, complete or not), then the ``outputs`` present."""
    if not os.path.isdir(save_dir):
        return []
    names = [n for n in os.listdir(save_dir)
             if (_NAME.match(n) and os.path.isdir(os.path.join(save_dir, n))) or n in outputs]
    return sorted(names, key=_run_order)


def shown(names, limit=4):
    return ', '.join(names[:limit]) + (f', ... {len(names) - limit} more' if len(names) > limit else '')


def earlier_run_refusal(save_dir, names, resume=None, resume_flag='--resume_model', with_state=False):
    """The one line refusing a run into ``save_dir`` that holds ``names``
    of another run: what is there and the ways on."""
    if resume is not None:
        return PSSLError(f'{save_dir}: holds another run ({shown(names)}) than the one '
                         f'{resume_flag} {resume} continues; choose another --save_dir, or pass '
                         '--overwrite to delete it')
    newest = newest_complete(save_dir, with_state)
    way = f'to continue it pass {resume_flag} {newest}, ' if newest else ''
    return PSSLError(f'{save_dir}: holds an earlier run ({shown(names)}); {way}to keep it choose '
                     'another --save_dir, to delete it pass --overwrite')


def require_no_earlier_run(save_dir, resume_flag, outputs=TRAIN_OUTPUTS, with_state=False):
    """For a training loop starting fresh: nothing to do in a claimed
    ``save_dir`` (its claim decided); elsewhere refuse, as a claim would, a
    folder holding an earlier run. Nothing is deleted."""
    if os.path.realpath(save_dir) in CLAIMED or not is_rank0():
        return
    names = earlier_run(save_dir, outputs)
    if names:
        raise earlier_run_refusal(save_dir, names, None, resume_flag, with_state)


def _is_model_temp(path):
    name = os.path.basename(path)
    return name.startswith('.tmp_') and name.endswith(_MODEL_SUFFIXES) and os.path.isfile(path)


def _remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


def _work_dir(save_dir, kind, iteration):
    return os.path.join(save_dir, f'.tmp_{kind}_iter_{iteration}.{os.urandom(6).hex()}')


class Checkpoints:
    """The checkpoints of one ``save_dir``.

    ``keep``: how many complete checkpoints to keep (<= 0: all). Pruning
    counts those already on disk from earlier runs, ranks them by ``n``, and
    never removes the one just saved. ``with_state``: checkpoints carry
    ``state.json`` and are only complete with it.
    """

    def __init__(self, save_dir, keep=0, with_state=False):
        self.save_dir, self.keep, self.with_state = save_dir, int(keep), with_state
        if os.path.exists(save_dir) and not os.path.isdir(save_dir):
            raise PSSLError(f'{save_dir}: save_dir is a file, not a folder')
        os.makedirs(save_dir, exist_ok=True)
        self.remove_leftovers()

    def path(self, iteration):
        return os.path.join(self.save_dir, f'iter_{int(iteration)}')

    def iteration_of(self, file_path):
        """``n`` when ``file_path`` is ``<save_dir>/iter_<n>/<file>``, else None."""
        folder = os.path.dirname(os.path.abspath(file_path))
        if os.path.dirname(folder) != os.path.abspath(self.save_dir):
            return None
        return checkpoint_iteration(folder)

    def save(self, iteration, params, optimizer_state, state=None):
        """Write ``model.pdparams``, ``model.pdopt`` (and ``state.json`` from the
        JSON-able ``state``) as one checkpoint, then prune; -> its folder."""
        import paddle
        with self.stage(iteration) as staging:
            paddle.save(params, staging.file(PARAMS))
            paddle.save(optimizer_state, staging.file(OPTIMIZER))
            if state is not None:
                with open(staging.file(STATE), 'w') as f:
                    json.dump(state, f, indent=1, default=json_default)
        return staging.directory

    def stage(self, iteration):
        """A :class:`Staging` to write the files of ``iter_<iteration>`` into
        one by one; ``commit()`` publishes them together."""
        return Staging(self, int(iteration))

    def complete(self):
        return complete_checkpoints(self.save_dir, self.with_state)

    def prune(self, keep_iteration=None):
        """Delete all but the newest ``keep`` complete checkpoints (and ``keep_iteration``)."""
        if self.keep <= 0:
            return
        others = [(n, p) for n, p in self.complete() if n != keep_iteration]
        room = self.keep - (keep_iteration is not None)
        for n, path in others[:max(len(others) - room, 0)]:
            # renamed first: a kill mid-delete leaves no half checkpoint named iter_<n>
            doomed = _work_dir(self.save_dir, 'del', n)
            os.rename(path, doomed)
            _remove_tree(doomed)

    def refuse_earlier_run(self, resume_flag, model_dirs=False):
        """A fresh run: refuse (one line) a ``save_dir`` holding an earlier
        run's ``iter_<n>`` folders (and with ``model_dirs`` ``best_model``/
        ``ema_best_model``) unless the tool claimed it
        (:func:`~paddle_pssl.utils.save_dir.claim_save_dir` decided then).
        Nothing is deleted here."""
        require_no_earlier_run(self.save_dir, resume_flag, TRAIN_OUTPUTS if model_dirs else (),
                               self.with_state)

    def remove_leftovers(self):
        """Undo or delete what a killed save left in ``save_dir``."""
        for name in os.listdir(self.save_dir):
            path = os.path.join(self.save_dir, name)
            work = _WORK.match(name)
            if work and work.group(1) == 'old' and not os.path.lexists(self.path(work.group(2))):
                os.rename(path, self.path(work.group(2)))  # killed between the two renames
            elif work:
                _remove_tree(path)
            elif _is_model_temp(path):
                os.remove(path)
            elif _NAME.match(name) or name in _MODEL_DIRS:
                for sub in os.listdir(path) if os.path.isdir(path) else ():
                    if _is_model_temp(os.path.join(path, sub)):
                        os.remove(os.path.join(path, sub))


class Staging:
    """Files of one checkpoint on their way in; as a context manager it
    commits on success and aborts on any exception (a kill leaves the
    staging folder, which the next :class:`Checkpoints` removes)."""

    def __init__(self, checkpoints, iteration):
        self.checkpoints, self.iteration = checkpoints, iteration
        self.directory = checkpoints.path(iteration)
        self.work = _work_dir(checkpoints.save_dir, 'new', iteration)
        os.mkdir(self.work)  # mode 0777 & ~umask, not mkdtemp's 0700

    def file(self, name):
        return os.path.join(self.work, name)

    def has(self, name):
        return os.path.isfile(self.file(name))

    def commit(self):
        """Rename the staging folder to ``iter_<n>`` (replacing any folder of
        that name), then prune; -> ``iter_<n>``."""
        aside = None
        if os.path.lexists(self.directory):
            # a directory cannot be renamed onto a non-empty one: move the old aside
            aside = _work_dir(self.checkpoints.save_dir, 'old', self.iteration)
            os.rename(self.directory, aside)
        os.rename(self.work, self.directory)
        if aside:
            _remove_tree(aside)
        self.checkpoints.prune(keep_iteration=self.iteration)
        return self.directory

    def abort(self):
        _remove_tree(self.work)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False
