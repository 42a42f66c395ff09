"""The one writer of a label store (format: :mod:`.store`), shared by label
generation and relabelling; the callers only compute labels.

A shard takes every N-th image of the source list (under
``paddle.distributed.launch`` each rank its own) and cuts it into fixed chunks
of ``batch_size`` images. A chunk whose labels all exist is skipped; otherwise
the whole chunk goes to the caller, so a resumed run sees the same batches
(and, with per-image seeds, the same random noise) as an uninterrupted one.
Only missing labels are written, each atomically, with one stats record per
label and one record per unreadable image in ``stats/shard-<i>-of-<N>[.skipped].jsonl``.
``finalize`` writes train.txt, the synsets and the manifest from what is on
disk, so any shard may run it at any time.
"""
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np

from . import store
from ..utils.errors import PSSLError
from ..utils.io import atomic_write_text

__all__ = ['Label', 'LabelStoreWriter', 'append_jsonl', 'image_seed', 'read_jsonl',
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
    with open(path, 'a') as f:
        f.write(json.dumps(record) + '\n')


def read_jsonl(path):
    """The records of a jsonl file; a torn last line (a killed run) is dropped."""
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return records


def versions():
    """Versions of Python and the stack, for the manifest."""
    out = {'python': platform.python_version()}
    for module in ('paddle', 'paddleseg', 'interpretdl', 'numpy', 'cv2', 'skimage', 'sklearn'):
        try:
            out[module] = __import__(module).__version__
        except Exception:   # noqa: BLE001  (a version is informative only)
            out[module] = None
    from .. import __version__
    out['paddle_pssl'] = __version__
    return out


class LabelStoreWriter:
    """Writes labels of ``items`` (SourceItems, in source order) into the
    store at ``root``; ``class_names`` become its synsets file."""

    def __init__(self, root, items, class_names, batch_size=8, on_bad_image='skip',
                 desc='labels'):
        if on_bad_image not in ('skip', 'raise'):
            raise PSSLError(f"on_bad_image must be 'skip' or 'raise', got {on_bad_image!r}")
        self.root, self.items, self.class_names = root, items, class_names
        self.batch_size = max(int(batch_size), 1)
        self.on_bad_image, self.desc = on_bad_image, desc
        self.counts = None
        self._stats_path = self._skipped_path = None

    def label_path(self, item):
        return os.path.join(self.root, store.label_relpath(item.rel))

    def has_label(self, item):
        return os.path.isfile(self.label_path(item))

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
        items = self.shard_items(shard)
        tag = shard_tag(shard)
        stats_dir = os.path.join(self.root, STATS_DIR)
        os.makedirs(stats_dir, exist_ok=True)
        self._stats_path = os.path.join(stats_dir, f'{tag}.jsonl')
        self._skipped_path = os.path.join(stats_dir, f'{tag}.skipped.jsonl')
        counts = self.counts = dict.fromkeys(('written', 'existing', 'skipped', *extra_counts), 0)
        started = time.time()
        from tqdm import tqdm
        bar = tqdm(total=len(items), desc=f'{self.desc} {tag}', disable=not progress, unit='img')
        try:
            for start in range(0, len(items), self.batch_size):
                if max_images is not None and counts['written'] >= max_images:
                    break   # whole chunks only: batches stay as in a full run
                chunk = items[start:start + self.batch_size]
                missing = sum(not self.has_label(it) for it in chunk)
                counts['existing'] += len(chunk) - missing
                if missing:
                    for label in label_chunk(chunk, start):
                        self._write(label)
                bar.update(len(chunk))
        finally:
            bar.close()
        counts['seconds'] = round(time.time() - started, 2)
        return counts

    def read(self, items, reader):
        """[(item, reader(item))] for the items that read. A PSSLError stops
        the run (``on_bad_image='raise'``) or skips the image: an image
        without a label is counted, logged and listed as skipped."""
        good = []
        for item in items:
            try:
                value = reader(item)
            except PSSLError as e:
                if self.on_bad_image == 'raise':
                    raise
                if not self.has_label(item):
                    self.counts['skipped'] += 1
                    append_jsonl(self._skipped_path, {'image': item.rel, 'reason': str(e)})
                    from paddleseg.utils import logger
                    logger.warning(f'skipped: {e}')
                continue
            good.append((item, value))
        return good

    def _write(self, label):
        path = self.label_path(label.item)
        if os.path.isfile(path):
            return   # written meanwhile (e.g. by another process): never overwrite
        mask = label.mask
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
        done = [it for it in self.items if self.has_label(it)]
        atomic_write_text(os.path.join(self.root, store.FILE_LIST),
                          ''.join(f'{store.label_relpath(it.rel)}\n' for it in done))
        store.write_synsets(os.path.join(self.root, store.SYNSETS), self.class_names)
        skipped, foreground = [], []
        stats_dir = os.path.join(self.root, STATS_DIR)
        for name in sorted(os.listdir(stats_dir)) if os.path.isdir(stats_dir) else []:
            if name.endswith('.skipped.jsonl'):
                skipped += read_jsonl(os.path.join(stats_dir, name))
            elif foreground_share:
                foreground += [r['foreground'] for r in read_jsonl(os.path.join(stats_dir, name))]
        manifest = dict(head or {}, versions=versions(), images_in_source=len(self.items),
                        labels=len(done))
        if foreground_share:
            manifest['mean_foreground_share'] = round(float(np.mean(foreground)), 4) \
                if foreground else None
        manifest.update(skipped=skipped, per_image_statistics='stats/shard-*-of-*.jsonl')
        manifest.update(tail or {})
        manifest['format'] = 'paddle_pssl.pseudo_labels.store'
        atomic_write_text(os.path.join(self.root, store.MANIFEST), json.dumps(manifest, indent=1))
        return manifest
