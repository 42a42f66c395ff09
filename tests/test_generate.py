"""Label generation: consensus rules by hand, store format read by upstream,
resume and shards, bad images, evaluation."""
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from paddleseg import transforms as T
from paddleseg.datasets import PSSLDataset

from paddle_pssl.pseudo_labels import consensus as cons
from paddle_pssl.pseudo_labels import store
from paddle_pssl.pseudo_labels.evaluate import IoUCounter, evaluate_store
from paddle_pssl.datasets.classification_set import list_source
from paddle_pssl.pseudo_labels.generate import PseudoLabelGenerator
from paddle_pssl.utils import PSSLError

from conftest import write_photo_source

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_consensus_of_identical_maps_is_that_map():
    rng = np.random.default_rng(0)
    m = rng.uniform(size=(5, 7)).astype(np.float32)
    c, mask, conf = cons.make_pseudo_label([m, m, m], method='fixed', value=0.5)
    np.testing.assert_allclose(c, m, atol=1e-7)
    np.testing.assert_array_equal(mask, (m > 0.5).astype(np.uint8))
    assert np.all(conf == 1.0)


def test_threshold_rules_and_agreement_by_hand():
    a = np.array([[0.0, 0.2], [0.6, 1.0]], np.float32)
    b = np.array([[0.0, 0.8], [0.2, 1.0]], np.float32)
    c, mask, conf = cons.make_pseudo_label([a, b], method='fixed', value=0.45)
    np.testing.assert_allclose(c, [[0.0, 0.5], [0.4, 1.0]])
    np.testing.assert_array_equal(mask, [[0, 1], [0, 1]])
    np.testing.assert_allclose(conf, [[1.0, 0.5], [0.5, 1.0]])
    assert cons.threshold_value(a, 'mean', 1.0) == pytest.approx(0.45)
    assert cons.pseudo_mask(a, 'percentile', 0.25).sum() == 1
    weighted = cons.consensus_map([a, b], weights=[3, 1])
    np.testing.assert_allclose(weighted, 0.75 * a + 0.25 * b, atol=1e-7)
    np.testing.assert_allclose(cons.renormalize(np.array([[1.0, 3.0]]), 'minmax'), [[0.0, 1.0]])


def test_iou_counter_by_hand():
    counter = IoUCounter()
    pred = np.array([[1, 1, 0, 0]], np.uint8)
    gt = np.array([[1, 0, 0, 0]], np.uint8)
    counter.add(pred, gt, class_id=7)
    r = counter.result()
    assert r['per_class_iou'][7] == pytest.approx(0.5)
    assert r['per_class_iou'][1000] == pytest.approx(2 / 3)
    assert r['miou'] == pytest.approx((0.5 + 2 / 3) / 2)
    assert r['fg_iou'] == pytest.approx(0.5)


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    """16 small real-photo images in 4 class folders named after ImageNet ids."""
    import skimage.data as data
    root = tmp_path_factory.mktemp('gen_src')
    photos = [data.coffee(), data.chelsea(), data.astronaut(), data.rocket()]
    classes = [967, 281, 834, 657]
    return write_photo_source(root, [
        (cid, k, cv2.resize(photo[k * 10:, k * 15:], (80 + 8 * k, 64 + 4 * k), interpolation=cv2.INTER_AREA))
        for photo, cid in zip(photos, classes) for k in range(4)])


def _cfg(source, out, explainers=None, batch_size=3):
    return {'seed': 0, 'source': dict(source),
            'classifiers': [{'name': 'efficientnet_lite0'}],
            'explainers': explainers or {'cam': {}, 'smoothgrad': {'n_samples': 4}},
            'output': {'pssl_root': str(out), 'batch_size': batch_size}}


def _arrays(root):
    out = {}
    for rel in open(os.path.join(root, store.FILE_LIST)).read().split():
        mask, conf = store.read_label(os.path.join(root, rel))
        out[rel] = (mask, conf)
    return out


@pytest.fixture(scope='module')
def full_run(source, tmp_path_factory):
    out = tmp_path_factory.mktemp('full')
    gen = PseudoLabelGenerator(_cfg(source, out))
    counts = gen.run(progress=False)
    return out, counts


def test_full_run_writes_upstream_readable_store(full_run, source):
    out, counts = full_run
    assert counts['written'] == 16 and counts['skipped'] == 0
    labels = _arrays(out)
    assert len(labels) == 16
    for mask, conf in labels.values():
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        assert 0 < mask.mean() < 1
        assert conf is not None and conf.min() >= 0 and conf.max() <= 1
    upstream = PSSLDataset([T.Normalize()], source['image_root'], str(out))
    assert len(upstream) == 16
    sample = upstream[0]
    assert set(np.unique(sample['label'])) <= {967, 281, 834, 657, 1000}
    assert (sample['label'] != 1000).any()
    manifest = __import__('json').load(open(out / store.MANIFEST))
    assert manifest['labels'] == 16 and manifest['versions']['paddle'] == __import__('paddle').__version__


def test_resume_recomputes_a_partial_batch_identically(full_run, source, tmp_path):
    out, _ = full_run
    partial = tmp_path / 'partial'
    gen = PseudoLabelGenerator(_cfg(source, partial))
    assert gen.run(progress=False, max_images=4)['written'] == 6   # two whole batches of 3
    first = gen.items[0]
    os.remove(gen.label_path(first))          # a batch with one label missing
    counts = gen.run(progress=False)
    assert counts['written'] == 11 and counts['existing'] == 5
    reference, resumed = _arrays(out), _arrays(partial)
    assert reference.keys() == resumed.keys()
    for rel in reference:
        np.testing.assert_array_equal(reference[rel][0], resumed[rel][0])
        np.testing.assert_array_equal(reference[rel][1], resumed[rel][1])


def test_killed_run_resumes_to_the_same_files(full_run, source, tmp_path):
    import yaml
    out, _ = full_run
    killed = tmp_path / 'killed'
    cfg_path = tmp_path / 'cfg.yml'
    cfg_path.write_text(yaml.safe_dump(_cfg(source, killed)))
    cmd = [sys.executable, os.path.join(REPO, 'tools', 'generate_pssl.py'), '-c', str(cfg_path), '--no_progress']
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list(killed.rglob('*_eiseg.npz'))) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    for path in killed.rglob('*_eiseg.npz'):     # no half-written label
        store.read_label(str(path))
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
    reference, resumed = _arrays(out), _arrays(killed)
    assert reference.keys() == resumed.keys()
    for rel in reference:
        np.testing.assert_array_equal(reference[rel][0], resumed[rel][0])


def test_two_shards_cover_the_set_once(source, tmp_path):
    out = tmp_path / 'sharded'
    written = []
    for i in range(2):
        gen = PseudoLabelGenerator(_cfg(source, out, explainers={'cam': {}}))
        written.append(gen.run(shard=(i, 2), progress=False)['written'])
    assert written == [8, 8]
    listed = open(out / store.FILE_LIST).read().split()
    assert len(listed) == len(set(listed)) == 16


def test_bad_images_are_converted_or_skipped_and_counted(source, tmp_path):
    import shutil
    root = tmp_path / 'src'
    shutil.copytree(source['image_root'], root)
    folder = root / 'train' / 'n00000967'
    base = cv2.imread(str(folder / 'n00000967_0.JPEG'))
    cv2.imwrite(str(folder / 'grey.png'), cv2.cvtColor(base, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / 'rgba.png'), cv2.cvtColor(base, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / 'deep.png'), base.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / 'tiny.png'), base[:4, :4])
    (folder / 'corrupt.jpg').write_bytes(b'\xff\xd8\xff garbage')
    gen = PseudoLabelGenerator(_cfg(dict(source, image_root=str(root)), tmp_path / 'out',
                                    explainers={'cam': {}}))
    counts = gen.run(progress=False)
    assert counts['written'] == 19 and counts['skipped'] == 2 and counts['converted'] == 3
    manifest = __import__('json').load(open(tmp_path / 'out' / store.MANIFEST))
    reasons = {s['image'].split('/')[-1]: s['reason'] for s in manifest['skipped']}
    assert set(reasons) == {'tiny.png', 'corrupt.jpg'}
    assert 'smaller than' in reasons['tiny.png'] and 'cannot decode' in reasons['corrupt.jpg']


def test_bad_source_config_lines(source, tmp_path):
    bad_list = tmp_path / 'list.txt'
    bad_list.write_text('train/n00000967/n00000967_0.JPEG 281\n')
    with pytest.raises(PSSLError, match=r"list.txt:1: .* is not in a folder named 'n00000281'"):
        list_source(source['image_root'], str(bad_list), source['synsets'])
    with pytest.raises(PSSLError, match="unknown key 'consensus.treshold'"):
        PseudoLabelGenerator(dict(_cfg(source, tmp_path), consensus={'treshold': 'mean'}))


def test_evaluate_store_against_its_own_masks_is_perfect(full_run, tmp_path):
    out, _ = full_run
    gt_root = tmp_path / 'gt'
    for rel, (mask, _) in _arrays(out).items():
        path = gt_root / (os.path.splitext(store.image_relpath(rel))[0] + '.png')
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), mask * 255)
    result = evaluate_store(str(out), str(gt_root))
    assert result['images'] == 16 and result['miou'] == pytest.approx(1.0)
    assert result['fg_iou'] == pytest.approx(1.0)


def test_boundary_f_score_by_hand():
    from paddle_pssl.pseudo_labels.evaluate import boundary_f_score
    gt = np.zeros((20, 20), np.uint8)
    gt[5:15, 5:15] = 1
    assert boundary_f_score(gt, gt) == pytest.approx(1.0)
    shifted = np.zeros_like(gt)
    shifted[6:16, 5:15] = 1          # 1 px off: within tolerance 2
    assert boundary_f_score(shifted, gt, tolerance=2) == pytest.approx(1.0)
    far = np.zeros_like(gt)
    far[0:3, 0:3] = 1
    assert boundary_f_score(far, gt, tolerance=1) == pytest.approx(0.0)
    assert boundary_f_score(np.zeros_like(gt), np.zeros_like(gt)) == 1.0


def test_label_checks_by_hand(tmp_path):
    """What the store refuses where labels are read, in one line naming the file."""
    assert store.mask_problem(np.array([[0, 1]], np.uint8)) is None
    assert store.mask_problem(np.array([[0, 1]], bool)) is None
    assert 'the value 255' in store.mask_problem(np.array([[0, 255]], np.uint8))
    assert 'a 0/255 mask?' in store.mask_problem(np.array([[0, 255]], np.uint8))
    assert 'the value -1' in store.mask_problem(np.array([[0, -1]], np.int64))
    assert 'dtype float32' in store.mask_problem(np.array([[0, 1]], np.float32))
    for dtype in (np.float16, np.float32):
        assert store.confidence_problem(np.array([0, 0.5, 1], dtype)) is None
        assert 'nan' in store.confidence_problem(np.array([0.5, np.nan], dtype))
        assert 'inf' in store.confidence_problem(np.array([0.5, np.inf], dtype))
        assert 'outside [0, 1]' in store.confidence_problem(np.array([0.5, 1.5], dtype))
        assert 'outside [0, 1]' in store.confidence_problem(np.array([0.5, -0.25], dtype))
    path = str(tmp_path / 'a.JPEG_eiseg.npz')
    np.savez(path, arr_0=np.array([[0, 255]], np.uint8))
    with pytest.raises(PSSLError, match=f'^{path}: arr_0 holds the value 255'):
        store.read_label(path)


def test_write_label_keeps_its_bits_and_copies_nothing_it_need_not(tmp_path):
    """The no-copy paths (uint8 0/1 mask, float16 confidence in [0, 1]) write
    what the converting path writes."""
    rng = np.random.default_rng(0)
    mask, confidence = rng.random((30, 40)) > 0.5, rng.random((30, 40)).astype(np.float32)
    store.write_label(str(tmp_path / 'a.npz'), mask, confidence)
    store.write_label(str(tmp_path / 'b.npz'), mask.astype(np.uint8), confidence.astype(np.float16))
    a, b = np.load(tmp_path / 'a.npz'), np.load(tmp_path / 'b.npz')
    for key in ('arr_0', 'confidence'):
        assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key])


def test_working_resolution_and_nearest_upscale():
    assert cons.working_shape((4096, 3000)) == (4096, 3000)          # kept: labelled as before
    assert cons.working_shape((8165, 12247)) == (1365, 2048)
    small = np.arange(6, dtype=np.float32).reshape(2, 3)
    big = cons.upscale_nearest(small, (5, 7), np.float16)
    rows = np.minimum(((np.arange(5) + 0.5) * 2 / 5).astype(int), 1)
    cols = np.minimum(((np.arange(7) + 0.5) * 3 / 7).astype(int), 2)
    assert big.dtype == np.float16 and np.array_equal(big, small[rows][:, cols].astype(np.float16))
    assert np.array_equal(cons.upscale_nearest(small, (2, 3), np.float32), small)


def test_images_up_to_the_bound_are_read_as_before(tmp_path):
    """An image of WORK_MAX_SIDE px a side reaches the explainers exactly as
    read_image_any + RGB gave it before the bound existed; one pixel more is
    shrunk to HUGE_WORK_SIDE, its file size kept for the written label."""
    from paddle_pssl.pseudo_labels.generate import _read_rgb
    from paddle_pssl.datasets.classification_set import SourceItem
    from paddle_pssl.utils.io import read_image_any
    rng = np.random.default_rng(0)
    for width, work in ((cons.WORK_MAX_SIDE, cons.WORK_MAX_SIDE), (cons.WORK_MAX_SIDE + 1, cons.HUGE_WORK_SIDE)):
        path = str(tmp_path / f'{width}.JPEG')
        cv2.imwrite(path, rng.integers(0, 255, (64, width, 3), np.uint8))
        image, note, full = _read_rgb(SourceItem(path, f'train/x/{width}.JPEG', 0, 'x'))
        assert full == (64, width) and image.shape[1] == work and note == ''
        if width == work:
            assert np.array_equal(image, cv2.cvtColor(read_image_any(path)[0], cv2.COLOR_BGR2RGB))
