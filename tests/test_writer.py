"""The label-store writer alone (no models): chunked resume, never overwriting,
source order in train.txt, skipped images, stats records, the manifest."""
import json
import os

import numpy as np
import pytest

from paddle_pssl.datasets.classification_set import SourceItem, list_source
from paddle_pssl.pseudo_labels import store
from paddle_pssl.pseudo_labels.writer import (Label, LabelStoreWriter, image_seed, read_jsonl,
                                              shard_of)
from paddle_pssl.utils import PSSLError

NAMES = ['cat', 'dog']


def _items(n=7, bad=()):
    out = []
    for i in range(n):
        name = NAMES[i % 2]
        rel = f'train/{name}/{"bad" if i in bad else "img"}{i}.jpg'
        out.append(SourceItem(f'/nowhere/{rel}', rel, i % 2, name))
    return out


def _read(item):
    if '/bad' in item.rel:
        raise PSSLError(f'{item.image_path}: cannot decode image')
    return int(item.rel.split('img')[-1].split('.')[0])


class _Labeller:
    """Labels every readable image of a chunk with a mask of ``fill``s; records the calls."""

    def __init__(self, writer, fill=1):
        self.writer, self.fill, self.calls = writer, fill, []

    def __call__(self, chunk, start):
        self.calls.append((start, [it.rel for it in chunk]))
        for item, index in self.writer.read(chunk, _read):
            mask = np.zeros((5, 4), np.uint8)
            mask[:2] = self.fill
            yield Label(item, mask, np.full((5, 4), 0.5, np.float32), {'index': index})


def test_resume_hands_over_only_unfinished_chunks_whole(tmp_path):
    items = _items(7)
    writer = LabelStoreWriter(str(tmp_path), items, NAMES, batch_size=3)
    first = _Labeller(writer)
    counts = writer.run(first, progress=False, max_images=2)
    assert counts['written'] == 3 and first.calls == [(0, [it.rel for it in items[:3]])]

    os.remove(writer.label_path(items[1]))
    again = _Labeller(writer, fill=0)       # different masks: existing labels must not change
    counts = writer.run(again, progress=False)
    assert [start for start, _ in again.calls] == [0, 3, 6]
    assert again.calls[0][1] == [it.rel for it in items[:3]]   # the whole chunk, not just item 1
    assert counts['written'] == 5 and counts['existing'] == 2 and counts['skipped'] == 0
    assert store.read_label(writer.label_path(items[0]))[0].sum() == 8    # kept from the first run
    assert store.read_label(writer.label_path(items[1]))[0].sum() == 0    # rewritten now

    third = _Labeller(writer)
    assert writer.run(third, progress=False)['existing'] == 7 and third.calls == []


def test_shards_and_finalize_list_labels_in_source_order(tmp_path):
    items = _items(7)
    writer = LabelStoreWriter(str(tmp_path), items, NAMES, batch_size=2)
    for shard in ((1, 2), (0, 2)):
        writer.run(_Labeller(writer), shard=shard, progress=False)
    manifest = writer.finalize(head={'who': 'test'}, tail={'last': True}, foreground_share=True)
    listed = open(tmp_path / store.FILE_LIST).read().split()
    assert listed == [store.label_relpath(it.rel) for it in items]
    assert store.read_synsets(str(tmp_path / store.SYNSETS)) == NAMES
    assert list(manifest)[0] == 'who' and list(manifest)[-2:] == ['last', 'format']
    assert manifest['labels'] == manifest['images_in_source'] == 7
    assert manifest['mean_foreground_share'] == pytest.approx(0.4)
    assert json.load(open(tmp_path / store.MANIFEST)) == manifest
    records = read_jsonl(str(tmp_path / 'stats' / 'shard-1-of-2.jsonl'))
    assert [r['index'] for r in records] == [1, 3, 5]
    assert records[0] == {'image': items[1].rel, 'class_id': 1, 'height': 5, 'width': 4,
                          'foreground': 0.4, 'confidence': 0.5, 'index': 1}
    assert 'mean_foreground_share' not in writer.finalize()


def test_unreadable_images_are_skipped_and_listed_or_stop_the_run(tmp_path):
    items = _items(5, bad=(2,))
    writer = LabelStoreWriter(str(tmp_path / 'skip'), items, NAMES, batch_size=2)
    counts = writer.run(_Labeller(writer), progress=False)
    assert counts['written'] == 4 and counts['skipped'] == 1
    manifest = writer.finalize()
    assert manifest['labels'] == 4 and len(manifest['skipped']) == 1
    assert manifest['skipped'][0]['image'] == items[2].rel
    assert 'cannot decode' in manifest['skipped'][0]['reason']
    assert store.label_relpath(items[2].rel) not in open(tmp_path / 'skip' / store.FILE_LIST).read()

    strict = LabelStoreWriter(str(tmp_path / 'raise'), items, NAMES, batch_size=2,
                              on_bad_image='raise')
    with pytest.raises(PSSLError, match='bad2.jpg: cannot decode'):
        strict.run(_Labeller(strict), progress=False)


def test_jsonl_with_a_torn_last_line(tmp_path):
    path = tmp_path / 'x.jsonl'
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": ')
    assert read_jsonl(str(path)) == [{'a': 1}, {'a': 2}]


def test_shards_and_seeds(monkeypatch):
    assert shard_of((1, 3)) == (1, 3)
    with pytest.raises(PSSLError, match='--shard 3/3'):
        shard_of((3, 3))
    monkeypatch.setenv('PADDLE_TRAINER_ID', '2')
    monkeypatch.setenv('PADDLE_TRAINERS_NUM', '4')
    assert shard_of() == (2, 4)
    assert image_seed(0, 'a') == image_seed(0, 'a') != image_seed(1, 'a')
    assert 0 <= image_seed(5, 'train/x/y.jpg') < 2 ** 31


def test_source_errors_name_the_config_key(tmp_path):
    (tmp_path / 'cat').mkdir()
    (tmp_path / 'cat' / 'a.png').write_bytes(b'')
    (tmp_path / 'cat' / 'notes.txt').write_text('')
    items, names = list_source(str(tmp_path))
    assert [it.rel for it in items] == ['cat/a.png'] and names == ['cat']
    with pytest.raises(PSSLError, match='missing.txt: train_dataset.synsets not found'):
        list_source(str(tmp_path), synsets=str(tmp_path / 'missing.txt'), key='train_dataset')
    with pytest.raises(PSSLError, match='source.image_root is required'):
        list_source('')
