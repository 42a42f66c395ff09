"""Paddle Inference shims for Paddle 3.3; each is inactive on Paddle 2.6.

Used by ``paddle_pssl.deploy`` (export, ``tools/infer.py``) and by the
explainers' inference engine (``explainers.base.InferenceForward``):

- ``program_file``: ``paddle.jit.save`` writes the program as ``<prefix>.json``
  on Paddle 3 (PIR) and as ``<prefix>.pdmodel`` on 2.6.
- ``memory_optim_ok``: ``enable_memory_optim()`` on a ``.json`` program makes
  Paddle 3.3's ``create_predictor`` fail ("Not find predictor_id 0 and
  pass_name memory_optimize_pass").
- ``set_onednn``: Paddle 3.3's CPU predictor turns oneDNN on by default, and
  its oneDNN path fails on interpolation ops ("ConvertPirAttribute2Runtime
  Attribute not support"). oneDNN is therefore switched off explicitly when
  not asked for, and refused (with a one-line warning) for programs that
  interpolate, as PaddleSeg's models do; plain classifiers keep it.
"""
import os
import sys

from .._paddleseg_compat import PADDLE3

# op names as they appear in a saved Paddle 3 program
INTERPOLATION_OPS = ('bilinear_interp', 'nearest_interp', 'bicubic_interp',
                     'linear_interp', 'trilinear_interp')
_warned = set()


def program_file(prefix):
    """The program file that ``paddle.jit.save(layer, prefix)`` wrote (this
    version's own format first, so a stale file of the other one is ignored)."""
    for ext in (('.json', '.pdmodel') if PADDLE3 else ('.pdmodel', '.json')):
        if os.path.isfile(prefix + ext):
            return prefix + ext
    raise FileNotFoundError(f'{prefix}.json / {prefix}.pdmodel: no saved program')


def memory_optim_ok(model_file):
    """Whether ``Config.enable_memory_optim()`` can be used with this program."""
    return not model_file.endswith('.json')


def interpolates(model_file):
    """Whether a saved program contains an interpolation op."""
    with open(model_file, 'rb') as f:
        text = f.read()
    return any(op.encode() in text for op in INTERPOLATION_OPS)


def warn_once(message):
    """Print ``warning: message`` to stderr, once per process."""
    if message not in _warned:
        _warned.add(message)
        print(f'warning: {message}', file=sys.stderr, flush=True)


def set_onednn(config, model_file, wanted):
    """Switch oneDNN on ``config`` (CPU) as wanted where it works; returns
    whether it is on. On Paddle 2.6 this is ``enable_mkldnn()`` when wanted,
    as before; it is off there by default."""
    if not PADDLE3:
        if wanted:
            config.enable_mkldnn()
        return wanted
    if wanted and interpolates(model_file):
        warn_once(f'{model_file}: oneDNN (mkldnn) disabled: Paddle 3.3 fails on its '
                  'interpolation ops with oneDNN on CPU')
        wanted = False
    if wanted:
        config.enable_mkldnn()
    else:
        config.disable_mkldnn()
    return wanted
