"""The one reader of weight files: Paddle's ``.pdparams``/``.pdopt`` (and the
allow-list machinery that the torch legacy reader shares), without running
pickled code.

``paddle.load`` is ``pickle.load``: a crafted ``.pdparams`` whose pickle asks
for ``os.system`` runs it. What ``paddle.save`` writes (Paddle 2.6 and 3.3,
pickle protocols 2-4) needs only a few globals: numpy's array and scalar
rebuilders and ``dtype``, ``collections.OrderedDict``, ``builtins.tuple``
(tensors inside nested objects are ``(name, array)`` tuples), ``_codecs.encode``
(protocol 2 writes bytes that way), and ``set``/``frozenset``. The
:class:`AllowListUnpickler` hands out local stand-ins for exactly those and
refuses anything else, before anything is called, with one line naming the
file and the global. Arrays of Python objects are refused too (weights are
numbers).

After unpickling, :func:`safe_load` converts the result exactly as
``paddle.load`` does (same Paddle helpers): big parameters split by protocol
2/3 are joined, arrays become ``paddle.Tensor`` (``return_numpy=True`` keeps
numpy) with their saved names, the name table is dropped.

Not read: files that are not pickles (static-graph binary tensors, programs)
and ``LoDTensor`` objects, which ``paddle.save`` pickles as a call to
``eval``; state dicts of dynamic-graph models and optimizers never hold them.
"""
import codecs
import collections
import os
import pickle
import types

import numpy as np

from .errors import PSSLError

try:  # numpy 2 moved numpy.core to numpy._core; files name either
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:
    from numpy.core.multiarray import _reconstruct as _np_reconstruct
    from numpy.core.multiarray import scalar as _np_scalar

__all__ = ['AllowListUnpickler', 'AllowedCall', 'Frozen', 'PADDLE_ALLOWED_GLOBALS',
           'SafeLoadPaddle', 'UnsafePickleError', 'ordered_dict', 'safe_load']


class UnsafePickleError(PSSLError, pickle.UnpicklingError):
    """A pickle asked for something that weights data never needs."""


class NotWeightsData(Exception):
    """Raised by a stand-in; the reader turns it into :class:`UnsafePickleError`."""


class Frozen:
    """Objects handed to pickles are immutable, so a file's BUILD opcodes cannot
    alter them (they are shared by every later load in the process)."""

    __slots__ = ()

    def __setattr__(self, name, value):
        raise NotWeightsData('the pickle tries to modify an allow-listed object')

    __delattr__ = __setattr__


class AllowedCall(Frozen):
    """A frozen wrapper of one of our own functions, called with positional
    arguments only (pickles pass no keywords)."""

    __slots__ = ('_fn',)

    def __init__(self, fn):
        object.__setattr__(self, '_fn', fn)

    def __call__(self, *args):
        return self._fn(*args)


class _Token(Frozen):
    """A global that pickles only pass around (e.g. ``numpy.ndarray``), never call."""

    __slots__ = ('name',)

    def __init__(self, name):
        object.__setattr__(self, 'name', name)

    def __repr__(self):
        return '<%s>' % self.name


def ordered_dict(*args):
    """``OrderedDict()`` or ``OrderedDict(pairs)``."""
    return collections.OrderedDict(*args)


_NDARRAY = _Token('numpy.ndarray')


def _data_dtype(dtype):
    if dtype.hasobject:
        raise NotWeightsData('the pickle asks for an array of Python objects')
    return dtype


def _reconstruct(cls, shape, typecode):
    # numpy pickles an array as _reconstruct(ndarray, (0,), b'b') + BUILD(state)
    if cls is not _NDARRAY:
        raise NotWeightsData('the pickle rebuilds an array of type %r' % (cls,))
    return _np_reconstruct(np.ndarray, shape, typecode)


def _dtype(*args):
    return _data_dtype(np.dtype(*args[:3]))


def _scalar(dtype, *data):
    if not isinstance(dtype, np.dtype):
        raise NotWeightsData('the pickle rebuilds a numpy scalar of %r' % (dtype,))
    return _np_scalar(_data_dtype(dtype), *data)


def _encode(text, encoding='latin1'):
    # protocol 2 stores bytes as _codecs.encode(str, 'latin1')
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise NotWeightsData('the pickle calls _codecs.encode on %s' % type(text).__name__)
    return codecs.encode(text, 'latin1')


def _data_only(kind):
    def make(*args):
        if len(args) > 1 or any(isinstance(a, (AllowedCall, _Token)) for a in args):
            raise NotWeightsData('the pickle calls %s with %r' % (kind.__name__, args))
        return kind(*args)
    return make


_BUILTINS = {name: AllowedCall(_data_only(kind))
             for name, kind in (('tuple', tuple), ('set', set), ('frozenset', frozenset))}

#: (module, name) -> stand-in, for what ``paddle.save`` writes. ``__builtin__``
#: is the Python 2 name that protocol 2 pickles use.
PADDLE_ALLOWED_GLOBALS = {
    ('collections', 'OrderedDict'): AllowedCall(ordered_dict),
    ('numpy', 'ndarray'): _NDARRAY,
    ('numpy', 'dtype'): AllowedCall(_dtype),
    ('_codecs', 'encode'): AllowedCall(_encode),
}
for _module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
    PADDLE_ALLOWED_GLOBALS[(_module, '_reconstruct')] = AllowedCall(_reconstruct)
    PADDLE_ALLOWED_GLOBALS[(_module, 'scalar')] = AllowedCall(_scalar)
for _module in ('builtins', '__builtin__'):
    PADDLE_ALLOWED_GLOBALS.update({(_module, n): call for n, call in _BUILTINS.items()})


class AllowListUnpickler(pickle.Unpickler):
    """Unpickler whose globals come only from ``allowed`` ((module, name) ->
    object); any other global, or a persistent id, is refused with
    :class:`UnsafePickleError` naming ``source``."""

    def __init__(self, file, source, allowed, **kwargs):
        super().__init__(file, **kwargs)
        self.source = source
        self._allowed = allowed

    def refuse(self, what):
        return UnsafePickleError('%s: refused to load: %s (not weights data)' % (self.source, what))

    def find_class(self, module, name):
        found = self._allowed.get((module, name))
        if found is None:
            raise self.refuse('the pickle asks for %s.%s' % (module, name))
        return found

    def persistent_load(self, pid):
        raise self.refuse('the pickle uses a persistent id')

    def load(self):
        try:
            return super().load()
        except NotWeightsData as e:
            raise self.refuse(str(e)) from None


def _unpickle(path):
    with open(path, 'rb') as f:
        try:
            return AllowListUnpickler(f, path, PADDLE_ALLOWED_GLOBALS, encoding='latin1').load()
        except UnsafePickleError:
            raise
        except Exception as e:  # truncated, garbage, or not a pickle at all
            reason = ' '.join(str(e).split())[:120] or type(e).__name__
            raise PSSLError(f'{path}: not a readable Paddle weights file ({reason})') from None


def safe_load(path, return_numpy=False):
    """``paddle.load(path)`` for a pickled ``.pdparams``/``.pdopt`` (or any
    ``paddle.save`` of tensors, arrays, numbers, strings, dicts, lists), with
    no pickled code run; raises PSSLError naming ``path`` otherwise."""
    # paddle.load's own post-processing helpers, so the result is the same
    from paddle.framework.io import _ndarray_to_tensor, _pack_loaded_dict, _parse_load_result

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PSSLError(f'{path}: weights file not found')
    result = _unpickle(path)
    names = 'StructuredToParameterName@@'
    if isinstance(result, dict):
        result = _pack_loaded_dict(result)
        if names in result:  # a state dict: paddle.save of a Layer's or an optimizer's
            for key, name in result[names].items():
                if isinstance(result[key], np.ndarray):
                    result[key] = _ndarray_to_tensor(result[key], return_numpy)
                    if not return_numpy and getattr(result[key], 'name', ''):
                        result[key].name = name
            del result[names]
            return result
    return _parse_load_result(result, return_numpy)


class SafeLoadPaddle(types.ModuleType):
    """``paddle`` as a module that we hand to PaddleSeg code in place of the
    real one: all of it, with ``load`` = :func:`safe_load`."""

    def __init__(self):
        super().__init__('paddle')

    def __getattr__(self, name):
        import paddle
        return getattr(paddle, name)

    @staticmethod
    def load(path, **configs):
        unknown = set(configs) - {'return_numpy'}
        if unknown:
            raise PSSLError(f'{path}: paddle.load options {sorted(unknown)} are not supported '
                            'for weight files')
        return safe_load(path, return_numpy=bool(configs.get('return_numpy', False)))
