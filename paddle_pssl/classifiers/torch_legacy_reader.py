"""Read PyTorch's *legacy* (non-zip, protocol 1001) ``torch.save`` files
without torch and without running arbitrary pickled code.

Layout of such a file (what ``torch.save(..., _use_new_zipfile_serialization=
False)`` writes), five things back to back:

1. a pickle of the magic number ``0x1950a86a20f9469cfc6c``;
2. a pickle of the protocol version ``1001``;
3. a pickle of a ``sys_info`` dict (``little_endian``, ``type_sizes``, ...);
4. the main pickle. Tensors are ``torch._utils._rebuild_tensor_v2(storage,
   offset, size, stride, ...)`` calls; each storage is a *persistent id*
   ``('storage', <StorageClass>, key, location, numel, view_metadata)``;
5. a pickle of the list of storage keys, then for each key in that order an
   int64 element count followed by the raw bytes of the storage.

Security: pickles are read with :class:`RestrictedUnpickler`, the project's
allow-list unpickler (:mod:`paddle_pssl.utils.safe_load`) given only the few
globals in :data:`ALLOWED_GLOBALS`, each mapped to a harmless local stand-in
(never the real torch object). Any other global (``os.system``,
``builtins.eval``, ...) raises :class:`UnsafePickleError` naming the file and
the global, before anything is called.

Public API::

    load_torch_legacy(path) -> object           # tensors -> numpy arrays
    load_torch_state_dict(path) -> Dict[str, np.ndarray]
"""
import collections
import io
import os
import struct
from typing import Any, Dict

import numpy as np

from ..utils.safe_load import AllowedCall, AllowListUnpickler, Frozen, NotWeightsData, \
    UnsafePickleError, ordered_dict

__all__ = [
    "ALLOWED_GLOBALS",
    "LEGACY_MAGIC_NUMBER",
    "LEGACY_PROTOCOL_VERSION",
    "RestrictedUnpickler",
    "TorchFileFormatError",
    "UnsafePickleError",
    "load_torch_legacy",
    "load_torch_state_dict",
]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


class TorchFileFormatError(ValueError):
    """The file is not a well-formed legacy torch file."""


class _StorageType(Frozen):
    """Stand-in for ``torch.FloatStorage`` & co.: only carries the dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name, dtype):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", np.dtype(dtype))

    def __repr__(self):
        return "<torch.%s>" % self.name

    def __call__(self, *args, **kwargs):
        # the format only names storage classes, it never calls them
        raise NotWeightsData("the pickle calls the storage class torch.%s" % self.name)


# bfloat16 has no numpy dtype: read the raw 16 bits, widen to float32 later
_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "uint16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}
_STORAGE_TYPES = {n: _StorageType(n, d) for n, d in _STORAGE_DTYPES.items()}


class _StorageRef:
    """A storage (or a view into one) whose bytes come after the main pickle."""

    __slots__ = ("root_key", "storage_type", "offset", "numel")

    def __init__(self, root_key, storage_type, offset, numel):
        self.root_key = root_key
        self.storage_type = storage_type
        self.offset = offset
        self.numel = numel


class _PendingTensor:
    """Result of a ``_rebuild_tensor*`` call, materialised once bytes are read."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _StorageRef):
            raise TorchFileFormatError("tensor built from a non-storage object")
        for name, seq in (("size", size), ("stride", stride)):
            if not isinstance(seq, (tuple, list)) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in seq
            ):
                raise TorchFileFormatError("bad tensor %s %r" % (name, seq))
        if len(size) != len(stride) or not isinstance(offset, int) or offset < 0:
            raise TorchFileFormatError("bad tensor geometry")
        self.storage = storage
        self.offset = offset
        self.size = tuple(size)
        self.stride = tuple(stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    # nn.Parameter wraps a tensor; the numpy result is the same
    return data


#: (module, name) -> local stand-in. Nothing else can be loaded.
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): AllowedCall(ordered_dict),
    ("torch._utils", "_rebuild_tensor"): AllowedCall(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): AllowedCall(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): AllowedCall(_rebuild_parameter),
}
ALLOWED_GLOBALS.update({("torch", n): t for n, t in _STORAGE_TYPES.items()})


class RestrictedUnpickler(AllowListUnpickler):
    """Unpickler that resolves globals only through :data:`ALLOWED_GLOBALS`.

    ``allow_globals=False`` refuses every global (for the header pickles).
    ``storages`` receives the storages met through persistent ids.
    """

    def __init__(self, file, source="<stream>", allow_globals=True, storages=None):
        super().__init__(file, source, ALLOWED_GLOBALS if allow_globals else {})
        self._source = source
        self._storages = storages

    def persistent_load(self, pid):
        if self._storages is None:
            raise self.refuse("the pickle uses a persistent id where none belongs")
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise TorchFileFormatError("%s: unsupported persistent id %r" % (self._source, pid))
        _, storage_type, key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType):
            raise TorchFileFormatError("%s: unknown storage type %r" % (self._source, storage_type))
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise TorchFileFormatError("%s: bad storage id %r" % (self._source, pid))
        root = self._storages.get(key)
        if root is None:
            root = _StorageRef(key, storage_type, 0, numel)
            self._storages[key] = root
        if view_metadata is None:
            return root
        # old torch: a view (view_key, offset, size) into the root storage
        try:
            view_key, offset, view_size = view_metadata
        except (TypeError, ValueError):
            raise TorchFileFormatError("%s: bad storage view %r" % (self._source, view_metadata))
        if (not isinstance(offset, int) or not isinstance(view_size, int) or offset < 0
                or view_size < 0 or offset + view_size > root.numel):
            raise TorchFileFormatError("%s: storage view out of range" % self._source)
        return _StorageRef(key, storage_type, offset, view_size)


def _read_pickle(f, source, **kwargs):
    try:
        return RestrictedUnpickler(f, source, **kwargs).load()
    except (UnsafePickleError, TorchFileFormatError):
        raise
    except Exception as e:  # truncated / garbage bytes
        raise TorchFileFormatError("%s: unreadable pickle (%s: %s)"
                                   % (source, type(e).__name__, e)) from e


def _materialise(obj, arrays):
    if isinstance(obj, _PendingTensor):
        base = arrays[obj.storage.root_key]
        start = obj.storage.offset + obj.offset
        limit = obj.storage.offset + obj.storage.numel
        if any(s == 0 for s in obj.size):
            out = np.zeros(obj.size, dtype=base.dtype)
        else:
            last = start + sum((n - 1) * st for n, st in zip(obj.size, obj.stride))
            if start >= limit or last >= limit:
                raise TorchFileFormatError("tensor reaches outside its storage")
            view = np.lib.stride_tricks.as_strided(
                base[start:], shape=obj.size,
                strides=tuple(st * base.itemsize for st in obj.stride), writeable=False)
            out = np.array(view, copy=True, order="C")  # owns its memory
        if obj.storage.storage_type.name == "BFloat16Storage":
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _materialise(v, arrays)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialise(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialise(v, arrays) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v, arrays) for v in obj)
    return obj


def load_torch_legacy(path) -> Any:
    """Load a legacy-format ``torch.save`` file; tensors become numpy arrays.

    Raises :class:`UnsafePickleError` for a disallowed global and
    :class:`TorchFileFormatError` for anything that is not this format
    (including the newer zip format, which this reader does not handle).
    """
    path = os.fspath(path)
    source = repr(path)
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:4] == b"PK\x03\x04":
        raise TorchFileFormatError(
            "%s is a zip-format torch file (torch >= 1.6 default); only the "
            "legacy format is supported" % source)
    f = io.BytesIO(data)
    magic = _read_pickle(f, source, allow_globals=False)
    if magic != LEGACY_MAGIC_NUMBER:
        raise TorchFileFormatError("%s: not a legacy torch file (bad magic number)" % source)
    version = _read_pickle(f, source, allow_globals=False)
    if version != LEGACY_PROTOCOL_VERSION:
        raise TorchFileFormatError("%s: unsupported protocol version %r" % (source, version))
    sys_info = _read_pickle(f, source, allow_globals=False)
    if not isinstance(sys_info, dict):
        raise TorchFileFormatError("%s: bad sys_info record" % source)
    order = "<" if sys_info.get("little_endian", True) else ">"

    storages = {}
    result = _read_pickle(f, source, storages=storages)
    keys = _read_pickle(f, source, allow_globals=False)
    if not isinstance(keys, list) or set(keys) != set(storages):
        raise TorchFileFormatError("%s: storage key list does not match the pickle" % source)

    arrays = {}
    for key in keys:
        ref = storages[key]
        head = f.read(8)
        if len(head) != 8:
            raise TorchFileFormatError("%s: truncated storage %s" % (source, key))
        (numel,) = struct.unpack(order + "q", head)
        if numel != ref.numel:
            raise TorchFileFormatError("%s: storage %s has %d elements, expected %d"
                                       % (source, key, numel, ref.numel))
        dtype = ref.storage_type.dtype.newbyteorder(order)
        nbytes = numel * dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise TorchFileFormatError("%s: truncated storage %s" % (source, key))
        arr = np.frombuffer(raw, dtype=dtype)
        arrays[key] = arr.astype(arr.dtype.newbyteorder("="), copy=False)
    return _materialise(result, arrays)


def load_torch_state_dict(path) -> Dict[str, np.ndarray]:
    """Load a legacy torch file holding a state dict: ``{name: np.ndarray}``.

    Accepts a bare state dict or a checkpoint dict with a ``state_dict`` /
    ``model`` entry holding one.
    """
    obj = load_torch_legacy(path)
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for k in ("state_dict", "model"):
            if _is_state_dict(obj.get(k)):
                obj = obj[k]
                break
    if not _is_state_dict(obj):
        raise TorchFileFormatError("%r holds no state dict of arrays" % os.fspath(path))
    return collections.OrderedDict(obj)


def _is_state_dict(obj):
    return (isinstance(obj, dict) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()))
