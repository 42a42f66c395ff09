"""Looking at a label store: the contact sheet and stats files, their counts
against the store, the seeded pick, stores without stats records or manifest,
missing images and bad input."""
import json
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from paddle_pssl.datasets.classification_set import list_source
from paddle_pssl.pseudo_labels import inspect as ins
from paddle_pssl.pseudo_labels import store
from paddle_pssl.pseudo_labels.writer import Label, LabelStoreWriter
from paddle_pssl.utils import PSSLError
from paddle_pssl.utils.cli import run
from paddle_pssl.utils.io import read_image_bgr

from conftest import write_photo_source

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = [967, 281, 834]


@pytest.fixture(scope='module')
def written(tmp_path_factory):
    """A store written by the label-store writer from 9 real photos (3 classes),
    one corrupt image skipped; its manifest records the image root as a
    generator run does."""
    import skimage.data as data
    src = tmp_path_factory.mktemp('inspect_src')
    photos = [data.coffee(), data.chelsea(), data.astronaut()]
    source = write_photo_source(src, [
        (cid, k, cv2.resize(photo[k * 20:, k * 30:], (96 + 16 * k, 72), interpolation=cv2.INTER_AREA))
        for photo, cid in zip(photos, CLASSES) for k in range(3)])
    bad = src / 'train' / f'n{CLASSES[0]:08d}' / f'n{CLASSES[0]:08d}_9.JPEG'
    bad.write_bytes(b'not a jpeg')
    items, names = list_source(source['image_root'], synsets=source['synsets'])
    root = str(tmp_path_factory.mktemp('inspect_store') / 'pssl')
    writer = LabelStoreWriter(root, items, names, batch_size=4)

    def label_chunk(chunk, start):
        for item, bgr in writer.read(chunk, lambda it: read_image_bgr(it.image_path)):
            grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255
            yield Label(item, (grey > grey.mean()).astype(np.uint8), np.abs(grey - grey.mean()) * 2)

    counts = writer.run(label_chunk, progress=False)
    assert counts['written'] == 9 and counts['skipped'] == 1
    writer.finalize(head={'config': {'source': {'image_root': source['image_root']}}})
    return {'root': root, 'image_root': source['image_root'], 'names': names}


def _cli(*args):
    return subprocess.run([sys.executable, '-m', 'paddle_pssl', 'inspect', *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO))


def _inspect(*args):
    """inspect_main in-process, as the CLI runs it -> (stats or None, exit code)."""
    try:
        return run(ins.inspect_main, list(args)), 0
    except SystemExit as e:
        return None, e.code


def _expected_sheet(num, tiles):
    cols = math.ceil(math.sqrt(num))
    width = ins.MARGIN + cols * (tiles * ins.TILE + (tiles - 1) * ins.GAP + ins.MARGIN)
    rows = math.ceil(num / cols)
    return ins.HEADER + rows * (ins.TILE + ins.CAPTION + ins.MARGIN), max(width, ins.MIN_WIDTH)


def test_cli_writes_sheet_and_stats_that_match_the_store(written, tmp_path):
    out = tmp_path / 'look'
    proc = _cli('--pssl_root', written['root'], '--num', '5', '--out', str(out))
    assert proc.returncode == 0, proc.stderr
    assert '9 labels' in proc.stdout and 'skipped images: 1' in proc.stdout

    sheet = cv2.imread(str(out / 'contact_sheet.png'))
    assert sheet.shape[:2] == _expected_sheet(5, tiles=2)       # the store has confidence
    plot = cv2.imread(str(out / 'stats.png'))
    assert plot.shape[:2] == (480, 1500)

    stats = json.loads((out / 'stats.json').read_text())
    labels, _ = store.list_labels(written['root'])
    assert stats['labels'] == len(labels) == 9
    assert stats['per_class'] == {f'n{c:08d}': 3 for c in CLASSES}
    assert len(stats['classes_without_labels']) == 1000 - 3
    assert [s['image'] for s in stats['skipped']] == [f'train/n{CLASSES[0]:08d}/n{CLASSES[0]:08d}_9.JPEG']
    assert 'cannot decode' in stats['skipped'][0]['reason']
    assert stats['per_image_source'] == 'stats_files' and stats['per_image_count'] == 9
    fg = [store.read_label(os.path.join(written['root'], rel))[0].mean() for rel, _, _ in labels]
    assert stats['foreground_share']['mean'] == pytest.approx(np.mean(fg), abs=1e-3)
    assert 0 < stats['mean_confidence']['min'] <= stats['mean_confidence']['max'] <= 1
    assert len(stats['sheet_labels']) == 5 and stats['sheet_problems'] == []
    assert stats['image_root'] == os.path.abspath(written['image_root'])


def test_same_seed_same_labels(written, tmp_path):
    picks = {}
    for run_id, seed in (('a', 0), ('b', 0), ('c', 1)):
        stats, code = _inspect('--pssl_root', written['root'], '--num', '4', '--seed', str(seed),
                               '--out', str(tmp_path / run_id))
        assert code == 0
        picks[run_id] = stats['sheet_labels']
    assert picks['a'] == picks['b']
    assert picks['a'] != picks['c']
    a = cv2.imread(str(tmp_path / 'a' / 'contact_sheet.png'))
    b = cv2.imread(str(tmp_path / 'b' / 'contact_sheet.png'))
    np.testing.assert_array_equal(a, b)


def test_store_without_stats_or_manifest(toy_pssl, tmp_path, capsys):
    root = toy_pssl['pssl_root']
    assert not os.path.exists(os.path.join(root, 'stats'))
    stats, code = _inspect('--pssl_root', root, '--out', str(tmp_path))
    assert code == 2 and 'pass --image_root' in capsys.readouterr().err

    stats, code = _inspect('--pssl_root', root, '--image_root', toy_pssl['imagenet_root'],
                           '--out', str(tmp_path), '--max_stats', '5')
    assert code == 0
    assert stats['per_image_source'] == 'sampled_label_files' and stats['per_image_count'] == 5
    assert stats['skipped'] is None and stats['labels'] == 12
    assert stats['per_class'] == {n: 4 for n in toy_pssl['class_names']}
    sheet = cv2.imread(str(tmp_path / 'contact_sheet.png'))
    assert sheet.shape[:2] == _expected_sheet(12, tiles=2)
    assert 'skipped images: unknown' in capsys.readouterr().out


def test_missing_image_is_a_note_a_wrong_root_an_error(written, tmp_path, capsys):
    stats, _ = _inspect('--pssl_root', written['root'], '--num', '3', '--out', str(tmp_path / 'a'))
    images = tmp_path / 'images'
    for rel, _, _ in store.list_labels(written['root'])[0]:
        image = store.image_relpath(rel)
        if rel != stats['sheet_labels'][0]:
            (images / image).parent.mkdir(parents=True, exist_ok=True)
            (images / image).write_bytes(open(os.path.join(written['image_root'], image), 'rb').read())
    stats, code = _inspect('--pssl_root', written['root'], '--num', '3', '--image_root', str(images),
                           '--out', str(tmp_path / 'b'))
    assert code == 0 and len(stats['sheet_problems']) == 1
    assert store.image_relpath(stats['sheet_labels'][0]) in stats['sheet_problems'][0]
    assert 'contact sheet: 1 problem' in capsys.readouterr().out

    empty = tmp_path / 'empty'
    empty.mkdir()
    _, code = _inspect('--pssl_root', written['root'], '--image_root', str(empty),
                       '--out', str(tmp_path / 'c'))
    err = capsys.readouterr().err
    assert code == 2 and 'none of the 9 sampled images' in err and len(err.splitlines()) == 1


def test_bad_roots_and_class_names(written, tmp_path, capsys):
    _, code = _inspect('--pssl_root', str(tmp_path / 'nope'))
    assert code == 2 and 'is not a directory' in capsys.readouterr().err
    (tmp_path / 'no_list').mkdir()
    _, code = _inspect('--pssl_root', str(tmp_path / 'no_list'), '--image_root', str(tmp_path))
    assert code == 2 and 'train.txt: file list not found' in capsys.readouterr().err

    names = written['names']
    mapping = tmp_path / 'names.txt'
    mapping.write_text(f'{names[967]} espresso\n{names[281]} tabby, tabby cat\n')
    assert ins.read_class_names(str(mapping), names)[281] == f'{names[281]} tabby'
    plain = tmp_path / 'plain.txt'
    plain.write_text('a\nb\n')
    with pytest.raises(PSSLError, match='has 2 names, the store has 1000'):
        ins.read_class_names(str(plain), names)
