"""Whether weights fit a model, and loading them strictly or by shape, for
every loader: a resume (``--resume_model``, ``--resume``) and a trained model
(``--model_path`` of evaluation, prediction, export, relabelling) must fit
every parameter; ``pretrained`` weights load by shape as PaddleSeg loads
them, but a file that fits almost nothing is refused. Each refusal is one
line naming the file, the first parameter that does not fit (both shapes)
and how many fit."""
import contextlib
import os

from .errors import PSSLError

__all__ = ['first_mismatch', 'require_fit', 'require_pretrained_fit', 'load_trained',
           'strict_model_path', 'MIN_PRETRAINED_SHARE']


def _shape(value):
    return list(getattr(value, 'shape', ()))


def first_mismatch(file_state, model_state):
    """The first parameter of ``model_state`` (in the model's order) that
    ``file_state`` lacks or holds in another shape, as one phrase; None when
    every one fits."""
    for key, value in model_state.items():
        if key not in file_state:
            first = next(iter(file_state), None)
            seen = f'; its first is {first} {_shape(file_state[first])}' if first else ''
            return f'{key} {_shape(value)} is not in the file{seen}'
        if _shape(file_state[key]) != _shape(value):
            return f'{key} is {_shape(file_state[key])} in the file, {_shape(value)} in the model'
    return None


def _require_state(path, file_state, flag):
    if not isinstance(file_state, dict) or not file_state:
        raise PSSLError(f'{path}: {flag} holds no parameters (not a state dict of a model)')


def _fitting(file_state, model_state):
    return sum(1 for k, v in model_state.items()
               if k in file_state and _shape(file_state[k]) == _shape(v))


def require_fit(path, file_state, model, flag):
    """Raise PSSLError naming ``path``, the first parameter of ``model``
    that the state dict ``file_state`` lacks or holds in another shape (a
    checkpoint of another architecture, or of another class count) and how
    many fit."""
    _require_state(path, file_state, flag)
    model_state = model.state_dict()
    problem = first_mismatch(file_state, model_state)
    if problem:
        raise PSSLError(f'{path}: {flag} does not fit {type(model).__name__}: {problem}; '
                        f'{_fitting(file_state, model_state)} of {len(model_state)} parameters fit')


def load_trained(model, path, flag='--model_path'):
    """Load the trained model ``path`` into ``model`` strictly: every
    parameter of the model from the file, in its shape (keys of the file the
    model lacks are left out), else one line naming the file, how many fit and
    the first that does not. For evaluation, prediction and export, where a
    parameter left at its initial value would give plausible wrong numbers.
    (``pretrained`` weights load by shape, as PaddleSeg loads them.)"""
    from .safe_load import safe_load
    if not os.path.isfile(path):
        raise PSSLError(f'{path}: {flag} file not found')
    file_state = safe_load(path)
    try:
        require_fit(path, file_state, model, flag)
    except PSSLError as e:
        raise PSSLError(f'{e} ({flag} takes the trained model itself; a checkpoint of another '
                        'model or class count, e.g. of pre-training, is a start: model.pretrained)') \
            from None
    model_state = model.state_dict()
    model.set_state_dict({k: file_state[k] for k in model_state})
    from paddleseg.utils import logger
    logger.info(f'{flag} {path}: loaded all {len(model_state)} parameters of {type(model).__name__}')
    return model


@contextlib.contextmanager
def strict_model_path(model_path, flag='--model_path'):
    """While inside, PaddleSeg's ``load_entire_model`` (what its ``predict``
    calls with the trained model's path) is :func:`load_trained` for
    ``model_path``; any other file (a model's ``pretrained``) still loads by shape."""
    import paddleseg.utils.utils as seg_utils
    by_shape = seg_utils.load_entire_model

    def load(model, path):
        if path == model_path:
            return load_trained(model, path, flag)
        return by_shape(model, path)
    seg_utils.load_entire_model = load
    try:
        yield
    finally:
        seg_utils.load_entire_model = by_shape


# below this share of a model's parameters, a load by shape ("pretrained")
# has loaded almost nothing: a file of another model, not a partial fit
MIN_PRETRAINED_SHARE = 0.1


def require_pretrained_fit(path, file_state, model, flag='pretrained'):
    """PaddleSeg loads ``pretrained`` weights by shape, skipping (and
    logging) what does not fit; that stays, but a file that fits fewer than
    :data:`MIN_PRETRAINED_SHARE` of ``model``'s parameters is refused with
    one line saying why (for a classifier's weights given as a backbone: the
    command that converts them). -> the number of parameters that fit."""
    _require_state(path, file_state, flag)
    model_state = model.state_dict()
    fits = _fitting(file_state, model_state)
    if fits >= max(1, MIN_PRETRAINED_SHARE * len(model_state)):
        return fits
    from ..classifiers.convert import conversion_hint
    raise PSSLError(f'{path}: as {flag} it fits {fits} of the {len(model_state)} parameters of '
                    f'{type(model).__name__}, so it would train from random weights; first: '
                    f'{first_mismatch(file_state, model_state)}{conversion_hint(path, file_state, model)}')
