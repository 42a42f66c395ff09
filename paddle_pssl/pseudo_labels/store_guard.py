"""What keeps one label store from being silently mixed or corrupted while
:class:`.writer.LabelStoreWriter` fills it.

Settings fingerprint (``<root>/fingerprint.json``): the writer's caller names
every setting that changes a label; the first run records them before its
first label, and a later run with other settings is refused with the keys
that differ, unless it passes ``allow_mixed`` (``--allow_mixed_settings``),
which adds its settings to the file's ``mixed`` list.

Shard lock (``<root>/locks/shard-<i>-of-<N>.lock``, a
:class:`~paddle_pssl.utils.run_lock.RunLock` holding pid, host and start
time): a second run of the same shard is refused; a stale lock of this host
is taken over with a warning, another host's only with ``break_lock``
(``--break_lock``).

Disk errors: an OSError while writing the store (no permission, read-only
file system, disk full) becomes one PSSLError line naming the file or folder.
"""
import contextlib
import hashlib
import json
import os

from ..utils.errors import PSSLError
from ..utils.io import atomic_write_text
from ..utils.run_lock import RunLock

__all__ = ['FINGERPRINT', 'LOCKS_DIR', 'ShardLock', 'check_fingerprint', 'disk_errors',
           'file_sha256', 'settings_diff']

FINGERPRINT = 'fingerprint.json'
LOCKS_DIR = 'locks'


@contextlib.contextmanager
def disk_errors(target):
    """Turn an OSError raised while writing ``target`` into one line. A
    temporary file's name is replaced by ``target`` (the user never named it)."""
    try:
        yield
    except OSError as e:
        name = e.filename if isinstance(e.filename, str) else None
        if not name or os.path.basename(name).startswith('.tmp_'):
            name = target
        raise PSSLError(f'{name}: cannot write ({e.strerror or type(e).__name__})') from e


def file_sha256(path, block=1 << 20):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(block), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _flat(value, prefix=''):
    """{'a': {'b': 1}, 'c': [{'d': 2}]} -> {'a.b': 1, 'c.0.d': 2}."""
    if isinstance(value, dict) and value:
        pairs = value.items()
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
        pairs = enumerate(value)
    else:
        return {prefix: value}
    out = {}
    for key, sub in pairs:
        out.update(_flat(sub, f'{prefix}.{key}' if prefix else str(key)))
    return out


def settings_diff(old, new, limit=4):
    """'key: old -> new, ...' for the keys whose values differ ('' if none)."""
    old, new = _flat(old), _flat(new)
    missing = '<unset>'
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k, missing) != new.get(k, missing)]
    parts = [f'{k}: {old.get(k, missing)!r} -> {new.get(k, missing)!r}' for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f'... {len(keys) - limit} more')
    return ', '.join(parts)


def _plain(settings):
    # JSON round trip: tuples become lists, so a value compares as it is stored
    return json.loads(json.dumps(settings, sort_keys=True))


def check_fingerprint(root, settings, allow_mixed=False, has_labels=None, write=True):
    """Refuse ``settings`` that differ from the store's recorded ones; record
    them when the store has none yet (``write``; ``has_labels()`` says
    whether labels exist without a record). -> the record (or None)."""
    path = os.path.join(root, FINGERPRINT)
    settings = _plain(settings)
    if not os.path.isfile(path):
        if not write:
            return None
        if has_labels is not None and has_labels():
            _warn(f'{root}: has labels but no {FINGERPRINT} (made before settings were recorded); '
                  f'recording this run\'s settings')
        record = {'settings': settings, 'mixed': []}
        with disk_errors(path):
            atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True))
        return record
    try:
        with open(path) as f:
            record = json.load(f)
        recorded = record['settings']
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PSSLError(f'{path}: unreadable settings record ({type(e).__name__}); '
                        f'it says which settings made the labels, restore or remove it')
    if recorded == settings or settings in record.get('mixed', []):
        return record
    diff = settings_diff(recorded, settings)
    if not allow_mixed:
        raise PSSLError(f'{root}: labels were made with other settings ({diff}); '
                        f'use a new output.pssl_root or --allow_mixed_settings')
    _warn(f'{root}: mixing labels of other settings ({diff}), as --allow_mixed_settings asks')
    if write:
        record.setdefault('mixed', []).append(settings)
        with disk_errors(path):
            atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True))
    return record


def _warn(message):
    from paddleseg.utils import logger
    logger.warning(message)


class ShardLock(RunLock):
    """``with ShardLock(root, tag, break_lock):`` holds the shard's lock file
    (:class:`~paddle_pssl.utils.run_lock.RunLock`)."""

    def __init__(self, root, tag, break_lock=False):
        self.tag = tag
        super().__init__(os.path.join(root, LOCKS_DIR, f'{tag}.lock'),
                         f'{tag} is being written by', break_lock)

    def __enter__(self):
        with disk_errors(self.folder):
            os.makedirs(self.folder, exist_ok=True)
            return self.acquire()
