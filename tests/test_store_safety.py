"""A label store cannot be silently mixed or written outside its root: the
settings fingerprint, the shard lock, skip records that count as done,
truncated JPEGs, escaping file-list paths and unwritable folders, each driven
through tools/generate_pssl.py (one `error:` line, exit 2, labels intact)."""
import errno
import json
import os
import socket
import subprocess
import sys

import cv2
import numpy as np
import pytest
import yaml

from paddle_pssl.datasets.classification_set import SourceItem, list_source
from paddle_pssl.pseudo_labels import store
from paddle_pssl.pseudo_labels.writer import Label, LabelStoreWriter
from paddle_pssl.utils import PSSLError
from paddle_pssl.utils.io import read_image_any

from conftest import write_photo_source

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRUNCATED = 'train/n00000281/n00000281_cut.JPEG'


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    """4 real photos in 2 classes, plus a JPEG cut after half its bytes."""
    import skimage.data as data
    root = tmp_path_factory.mktemp('safety_src')
    src = write_photo_source(root, [
        (cid, k, cv2.resize(photo[k * 20:, k * 30:], (72, 56), interpolation=cv2.INTER_AREA))
        for photo, cid in ((data.coffee(), 967), (data.chelsea(), 281)) for k in range(2)])
    ok, jpeg = cv2.imencode('.jpg', cv2.resize(data.chelsea(), (96, 80)))
    (root / TRUNCATED).write_bytes(jpeg.tobytes()[:len(jpeg) // 2])
    return src


def _config(tmp_path, source, out, **extra):
    cfg = {'seed': 0, 'source': dict(source),
           'classifiers': [{'name': 'efficientnet_lite0', 'input_size': 64}],
           'explainers': {'cam': {}}, 'output': {'pssl_root': str(out), 'batch_size': 2}}
    cfg.update(extra)
    path = tmp_path / f'cfg_{len(list(tmp_path.glob("cfg_*")))}.yml'
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _generate(cfg, *flags):
    return subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'generate_pssl.py'),
                           '-c', cfg, '--no_progress', *flags],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def _refused(proc, *needles):
    """Exit 2 with exactly one `error:` line (containing ``needles``), no traceback."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _labels(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*_eiseg.npz'))}


@pytest.fixture(scope='module')
def made(source, tmp_path_factory):
    """One complete store (run twice), and the two runs' outputs."""
    tmp = tmp_path_factory.mktemp('made')
    out = tmp / 'store'
    cfg = _config(tmp, source, out)
    first, second = _generate(cfg), _generate(cfg)
    return tmp, out, cfg, first, second


def test_skipped_image_counts_once_and_as_done(made):
    tmp, out, cfg, first, second = made
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert 'written 4, already there 0, skipped 1 (earlier runs: 0)' in first.stdout
    # the chunk holding the cut JPEG is done: nothing redone, nothing listed twice
    assert 'written 0, already there 4, skipped 0 (earlier runs: 1)' in second.stdout
    manifest = json.loads((out / store.MANIFEST).read_text())
    assert [s['image'] for s in manifest['skipped']] == [TRUNCATED]
    assert 'truncated' in manifest['skipped'][0]['reason']
    assert manifest['label_settings']['settings']['consensus']['threshold'] == 'mean'
    for proc in (first, second):   # InterpretDL's false warning is gone
        assert 'Paddle should be installed' not in proc.stdout + proc.stderr
    assert not os.listdir(out / 'locks')   # released


def test_other_settings_are_refused_or_mixed_with_the_flag(made, tmp_path):
    _, out, cfg, _, _ = made
    before = _labels(out)
    proc = _generate(cfg, '-o', 'consensus.threshold=otsu')
    _refused(proc, str(out), "consensus.threshold: 'mean' -> 'otsu'", '--allow_mixed_settings')
    assert _labels(out) == before
    # a nonexistent classifier on a complete store fails too, before any model loads
    bad = yaml.safe_load(open(cfg))
    bad['classifiers'] = [{'name': 'no_such_net'}]
    bad_cfg = tmp_path / 'bad.yml'
    bad_cfg.write_text(yaml.safe_dump(bad))
    _refused(_generate(str(bad_cfg)), "classifiers.0.name 'no_such_net' is not a classifier")
    assert json.loads((out / store.MANIFEST).read_text())['config']['classifiers'][0]['name'] \
        == 'efficientnet_lite0'


def test_mixing_allowed_is_recorded(source, tmp_path):
    out = tmp_path / 'mixed'
    cfg = _config(tmp_path, source, out, output={'pssl_root': str(out), 'batch_size': 8})
    assert _generate(cfg).returncode == 0   # one chunk of all 5 images
    first = sorted(_labels(out))[0]
    os.remove(out / first)
    proc = _generate(cfg, '-o', 'consensus.threshold=otsu', '--allow_mixed_settings')
    assert proc.returncode == 0 and 'written 1,' in proc.stdout, proc.stderr
    record = json.loads((out / 'fingerprint.json').read_text())
    assert record['settings']['consensus']['threshold'] == 'mean'
    assert [m['consensus']['threshold'] for m in record['mixed']] == ['otsu']
    assert json.loads((out / store.MANIFEST).read_text())['label_settings'] == record


def _lock(out, pid, host=None):
    (out / 'locks').mkdir(parents=True, exist_ok=True)
    (out / 'locks' / 'shard-0-of-1.lock').write_text(json.dumps(
        {'pid': pid, 'host': host or socket.gethostname(), 'started': 'then'}))


def test_shard_lock_refuses_a_live_run_and_takes_over_a_dead_one(made, tmp_path):
    _, out, cfg, _, _ = made
    _lock(out, os.getpid())                       # this test process: alive
    _refused(_generate(cfg), 'shard-0-of-1.lock', f'pid {os.getpid()}', '--break_lock')
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    _lock(out, dead.pid)
    proc = _generate(cfg)
    assert proc.returncode == 0 and 'taking over the lock' in proc.stdout + proc.stderr
    assert not os.listdir(out / 'locks')


def test_another_hosts_lock_needs_break_lock(tmp_path):
    from paddle_pssl.pseudo_labels.store_guard import ShardLock
    _lock(tmp_path, 1, host='another-host')       # its pid cannot be checked from here
    with pytest.raises(PSSLError, match='being written by pid 1 on another-host'):
        with ShardLock(str(tmp_path), 'shard-0-of-1'):
            pass
    with ShardLock(str(tmp_path), 'shard-0-of-1', break_lock=True) as lock:
        assert json.loads(open(lock.path).read())['pid'] == os.getpid()
    assert not os.listdir(tmp_path / 'locks')


def test_file_list_paths_cannot_escape(source, tmp_path):
    image_root = source['image_root']
    outside = tmp_path / 'x' / 'n00000967'
    outside.mkdir(parents=True)
    cv2.imwrite(str(outside / 'a.JPEG'), np.full((40, 40, 3), 128, np.uint8))
    escaping = os.path.relpath(outside / 'a.JPEG', image_root)
    for line in (f'{escaping} 967', f'{outside / "a.JPEG"} 967'):
        listing = tmp_path / 'list.txt'
        listing.write_text(f'train/n00000967/n00000967_0.JPEG 967\n{line}\n')
        cfg = _config(tmp_path, dict(source, file_list=str(listing)), tmp_path / 'out')
        _refused(_generate(cfg), 'list.txt:2:', 'inside source.image_root')
        assert sorted(os.listdir(outside)) == ['a.JPEG'] and not (tmp_path / 'out').exists()
    writer = LabelStoreWriter(str(tmp_path / 'w'), [], ['c'])   # the writer's own check
    with pytest.raises(PSSLError, match='outside'):
        writer.label_path(SourceItem('/a.jpg', '../c/a.jpg', 0, 'c'))


def test_output_folder_that_cannot_be_made(source, tmp_path):
    (tmp_path / 'file').write_text('not a folder')
    cfg = _config(tmp_path, source, tmp_path / 'file' / 'store')
    _refused(_generate(cfg), 'cannot write')


def test_read_only_store_folder(made):
    _, out, cfg, _, _ = made
    os.chmod(out, 0o555)
    try:
        if os.access(out, os.W_OK):
            pytest.skip('this user (root) writes into a 0555 folder anyway')
        before = _labels(out)
        _refused(_generate(cfg), 'cannot write')
        assert _labels(out) == before
    finally:
        os.chmod(out, 0o755)


def test_disk_full_and_read_only_are_one_line_and_keep_labels(tmp_path, monkeypatch):
    """As root chmod does not stop writes: the OSErrors are raised by hand."""
    items = [SourceItem(f'/none/{i}.jpg', f'train/c/{i}.jpg', 0, 'c') for i in range(4)]
    writer = LabelStoreWriter(str(tmp_path), items, ['c'], batch_size=2)

    def label_chunk(chunk, start):
        for item in chunk:
            yield Label(item, np.ones((3, 3), np.uint8), np.ones((3, 3), np.float32))
    writer.run(label_chunk, progress=False, max_images=1)
    kept = _labels(tmp_path)
    assert len(kept) == 2

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / '.tmp_x.npz'))
    monkeypatch.setattr(store, 'atomic_write', full)
    with pytest.raises(PSSLError, match=r'train/c/2.jpg_eiseg.npz: cannot write \(No space left'):
        writer.run(label_chunk, progress=False)
    assert _labels(tmp_path) == kept and not list(tmp_path.rglob('.tmp_*'))
    assert not os.listdir(tmp_path / 'locks')   # released on the error too

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
    monkeypatch.setattr('paddle_pssl.pseudo_labels.writer.atomic_write_text', read_only)
    with pytest.raises(PSSLError, match=r'train.txt: cannot write \(Read-only'):
        writer.finalize()
    assert _labels(tmp_path) == kept


def test_truncated_jpeg_and_empty_class_folder(source, tmp_path, capsys):
    with pytest.raises(PSSLError, match='n00000281_cut.JPEG: truncated or damaged JPEG'):
        read_image_any(os.path.join(source['image_root'], TRUNCATED))
    (tmp_path / 'cat').mkdir()
    (tmp_path / 'dog').mkdir()
    cv2.imwrite(str(tmp_path / 'cat' / 'a.png'), np.zeros((9, 9, 3), np.uint8))
    items, names = list_source(str(tmp_path))
    assert names == ['cat', 'dog'] and [it.rel for it in items] == ['cat/a.png']
    out = capsys.readouterr()
    warned = [line for line in (out.out + out.err).splitlines() if 'no images' in line]
    assert len(warned) == 1 and 'dog' in warned[0]
