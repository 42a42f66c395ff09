"""The one writer of a label store (format: :mod:`.store`), shared by label
generation and relabelling; the callers only compute labels.

A shard takes every N-th image of the source list (under
``paddle.distributed.launch`` each rank its own) and cuts it into fixed chunks
of ``batch_size`` images. A chunk whose images are all done (a label, or a
skip record of the unchanged file) is skipped; otherwise the whole chunk goes
to the caller, so a resumed run sees the same batches (and, with per-image
seeds, the same random noise) as an uninterrupted one. Only missing labels
are written, each atomically, with one stats record per label and one record
per unreadable image in ``stats/shard-<i>-of-<N>[.skipped].jsonl``. A skip
record holds the file's size and mtime: an image replaced since is tried
again. ``finalize`` writes train.txt, the synsets and the manifest from what
is on disk, so any shard may run it at any time.

Guards (:mod:`.store_guard`): a run holds its shard's lock; given the
label-affecting ``settings``, a run refuses a store whose labels were made
with other settings; a failed write is one line naming the file; a label
path outside the root is refused.
"""
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np

from . import store
from .store_guard import ShardLock, check_fingerprint, disk_errors
from ..utils.errors import PSSLError
from ..utils.io import atomic_write_text

__all__ = ['Label', 'LabelStoreWriter', 'append_jsonl', 'image_seed', 'iter_jsonl', 'read_jsonl',
           'shard_of', 'shard_tag', 'versions']

STATS_DIR = 'stats'


@dataclass
class Label:
    """One new label: a SourceItem, its mask and confidence, and the caller's
    own fields for the image's stats record."""
    item: object
    mask: np.ndarray
    confidence: np.ndarray
    stats: dict = field(default_factory=dict)


def shard_of(shard=None):
    """(index, count): explicit ``(i, n)``, else the launcher's rank, else (0, 1)."""
    if shard is not None:
        index, count = shard
        if not (count >= 1 and 0 <= index < count):
            raise PSSLError(f'--shard {index}/{count}: need 0 <= i < N')
        return index, count
    rank = int(os.environ.get('PADDLE_TRAINER_ID', '0'))
    world = int(os.environ.get('PADDLE_TRAINERS_NUM', '1'))
    return rank, max(world, 1)


def shard_tag(shard):
    return f'shard-{shard[0]}-of-{shard[1]}'


def image_seed(seed, rel):
    """A per-image seed independent of batch and shard."""
    digest = hashlib.sha256(f'{seed}:{rel}'.encode()).digest()
    return int.from_bytes(digest[:4], 'little') & 0x7FFFFFFF


def append_jsonl(path, record):
    with disk_errors(path), open(path, 'a') as f:
        f.write(json.dumps(record) + '\n')


def iter_jsonl(path):
    """The records of a jsonl file, one at a time (a 1.28 M-image shard does
    not fit in memory as dicts); a torn last line (a killed run) is dropped."""
    with open(path) as f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                pass


def read_jsonl(path):
    """:func:`iter_jsonl` as a list."""
    return list(iter_jsonl(path))


def versions():
    """Versions of Python and the stack, for the manifest."""
    out = {'python': platform.python_version()}
    for module in ('paddle', 'paddleseg', 'interpretdl', 'numpy', 'cv2', 'skimage', 'sklearn'):
        try:
            if module == 'interpretdl':
                # from its metadata: importing it unmuted prints a false
                # "Paddle should be installed" line (see explainers.base.import_interpretdl)
                from importlib.metadata import version
                out[module] = version(module)
            else:
                out[module] = __import__(module).__version__
        except Exception:   # noqa: BLE001  (a version is informative only)
            out[module] = None
    from .. import __version__
    out['paddle_pssl'] = __version__
    return out


class LabelStoreWriter:
    """Writes labels of ``items`` (SourceItems, in source order) into the
    store at ``root``; ``class_names`` become its synsets file.

    ``settings``: every setting that changes a label (JSON-able; None: not
    checked), recorded in the store's fingerprint and the manifest;
    ``allow_mixed`` accepts a store made with other settings; ``break_lock``
    takes over another host's lock of the shard."""

    def __init__(self, root, items, class_names, batch_size=8, on_bad_image='skip',
                 desc='labels', settings=None, allow_mixed=False, break_lock=False):
        if on_bad_image not in ('skip', 'raise'):
            raise PSSLError(f"on_bad_image must be 'skip' or 'raise', got {on_bad_image!r}")
        self.root, self.items, self.class_names = root, items, class_names
        self.batch_size = max(int(batch_size), 1)
        self.on_bad_image, self.desc = on_bad_image, desc
        self.settings, self.allow_mixed, self.break_lock = settings, allow_mixed, break_lock
        self.counts = None
        self._stats_path = self._skipped_path = None
        self._skips = {}

    def label_path(self, item):
        """The label file of ``item``; one that would land outside the root
        (a ``..`` or absolute image path) is refused."""
        path = os.path.join(self.root, store.label_relpath(item.rel))
        root = os.path.abspath(self.root)
        if os.path.commonpath([root, os.path.abspath(path)]) != root:
            raise PSSLError(f'{item.rel}: its label would be written outside {self.root}')
        return path

    def has_label(self, item):
        return os.path.isfile(self.label_path(item))

    def _skip_key(self, item):
        """[size, mtime_ns] of the image file, or None without one."""
        try:
            st = os.stat(item.image_path)
        except OSError:
            return None
        return [st.st_size, st.st_mtime_ns]

    def _skip_records(self):
        """{image rel: its last skip record} over every shard's skip file."""
        records = {}
        stats_dir = os.path.join(self.root, STATS_DIR)
        for name in sorted(os.listdir(stats_dir)) if os.path.isdir(stats_dir) else []:
            if name.endswith('.skipped.jsonl'):
                for r in read_jsonl(os.path.join(stats_dir, name)):
                    records[r.get('image')] = r
        return records

    def _skipped_before(self, item):
        """True when the image was skipped before and its file has not changed."""
        record = self._skips.get(item.rel)
        return record is not None and record.get('file') == self._skip_key(item)

    def shard_items(self, shard):
        index, count = shard
        return self.items[index::count]

    def run(self, label_chunk, shard=None, progress=True, max_images=None, extra_counts=()):
        """Label the shard: ``label_chunk(chunk, start)`` gets every chunk
        with a missing label (``start``: its offset in the shard's list) and
        yields a :class:`Label` per image it labelled; it may call
        :meth:`read` to read the chunk's images. -> counts (written,
        existing, skipped, each of ``extra_counts``, seconds). ``counts`` is
        live on the writer during the run, for the caller's own counts."""
        shard = shard_of(shard)
        tag = shard_tag(shard)
        with ShardLock(self.root, tag, self.break_lock):
            return self._run_locked(label_chunk, shard, tag, progress, max_images, extra_counts)

    def _run_locked(self, label_chunk, shard, tag, progress, max_images, extra_counts):
        items = self.shard_items(shard)
        stats_dir = os.path.join(self.root, STATS_DIR)
        with disk_errors(stats_dir):
            os.makedirs(stats_dir, exist_ok=True)
        self.check_settings(write=True)
        self._stats_path = os.path.join(stats_dir, f'{tag}.jsonl')
        self._skipped_path = os.path.join(stats_dir, f'{tag}.skipped.jsonl')
        self._skips = self._skip_records()
        counts = self.counts = dict.fromkeys(
            ('written', 'existing', 'skipped', 'skipped_earlier', *extra_counts), 0)
        started = time.time()
        from tqdm import tqdm
        bar = tqdm(total=len(items), desc=f'{self.desc} {tag}', disable=not progress, unit='img')
        try:
            for start in range(0, len(items), self.batch_size):
                if max_images is not None and counts['written'] >= max_images:
                    break   # whole chunks only: batches stay as in a full run
                chunk = items[start:start + self.batch_size]
                labelled = sum(self.has_label(it) for it in chunk)
                earlier = sum(not self.has_label(it) and self._skipped_before(it) for it in chunk)
                counts['existing'] += labelled
                counts['skipped_earlier'] += earlier
                if labelled + earlier < len(chunk):
                    for label in label_chunk(chunk, start):
                        self._write(label)
                bar.update(len(chunk))
        finally:
            bar.close()
        counts['seconds'] = round(time.time() - started, 2)
        return counts

    def check_settings(self, write=False):
        """Refuse a store made with other settings (see :mod:`.store_guard`);
        with ``write``, record the settings if the store has none yet."""
        if self.settings is None:
            return None
        return check_fingerprint(self.root, self.settings, self.allow_mixed, write=write,
                                 has_labels=lambda: any(self.has_label(it) for it in self.items))

    def read(self, items, reader):
        """[(item, reader(item))] for the items that read. A PSSLError stops
        the run (``on_bad_image='raise'``) or skips the image: an image
        without a label is counted, logged and listed as skipped."""
        good = []
        for item in items:
            try:
                value = reader(item)
            except PSSLError as e:
                self.skip(item, e)
                continue
            good.append((item, value))
        return good

    def skip(self, item, error):
        """Count, log and list ``item`` as skipped for ``error`` (a PSSLError,
        raised again with ``on_bad_image='raise'``); an image with a label, or
        skipped before and unchanged, is not counted again."""
        if self.on_bad_image == 'raise':
            raise error
        if not self.has_label(item) and not self._skipped_before(item):
            self.counts['skipped'] += 1
            record = {'image': item.rel, 'reason': str(error), 'file': self._skip_key(item)}
            append_jsonl(self._skipped_path, record)
            self._skips[item.rel] = record
            from paddleseg.utils import logger
            logger.warning(f'skipped: {error}')

    def _write(self, label):
        path = self.label_path(label.item)
        if os.path.isfile(path):
            return   # written meanwhile (e.g. by another process): never overwrite
        mask = label.mask
        with disk_errors(path):
            store.write_label(path, mask, label.confidence)
        self.counts['written'] += 1
        append_jsonl(self._stats_path, {
            'image': label.item.rel, 'class_id': label.item.class_id,
            'height': int(mask.shape[0]), 'width': int(mask.shape[1]),
            'foreground': round(float(mask.mean()), 4),
            'confidence': round(float(label.confidence.mean()), 4), **label.stats})

    def finalize(self, head=None, tail=None, foreground_share=False):
        """Write train.txt (every label on disk, in source order), the synsets
        and the manifest: ``head``, the store's facts, ``tail``. With
        ``foreground_share`` the manifest has the mean foreground share of
        the stats records. -> the manifest."""
        record = self.check_settings()
        done = [it for it in self.items if self.has_label(it)]
        list_path = os.path.join(self.root, store.FILE_LIST)
        with disk_errors(list_path):
            atomic_write_text(list_path, ''.join(f'{store.label_relpath(it.rel)}\n' for it in done))
        synsets_path = os.path.join(self.root, store.SYNSETS)
        with disk_errors(synsets_path):
            store.write_synsets(synsets_path, self.class_names)
        foreground = []
        stats_dir = os.path.join(self.root, STATS_DIR)
        for name in sorted(os.listdir(stats_dir)) if os.path.isdir(stats_dir) else []:
            if foreground_share and not name.endswith('.skipped.jsonl'):
                foreground += [r['foreground'] for r in read_jsonl(os.path.join(stats_dir, name))]
        # each image once (its last record), in source order, unless labelled since
        records, labelled = self._skip_records(), {it.rel for it in done}
        skipped = [{'image': it.rel, 'reason': records[it.rel].get('reason')}
                   for it in self.items if it.rel in records and it.rel not in labelled]
        manifest = dict(head or {}, versions=versions(), images_in_source=len(self.items),
                        labels=len(done))
        if record is not None:
            manifest['label_settings'] = record
        if foreground_share:
            manifest['mean_foreground_share'] = round(float(np.mean(foreground)), 4) \
                if foreground else None
        manifest.update(skipped=skipped, per_image_statistics='stats/shard-*-of-*.jsonl')
        manifest.update(tail or {})
        manifest['format'] = 'paddle_pssl.pseudo_labels.store'
        manifest_path = os.path.join(self.root, store.MANIFEST)
        with disk_errors(manifest_path):
            atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
        return manifest
