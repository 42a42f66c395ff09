"""A bad training input ends ``tools/train.py`` with one line and exit 2, never
a hang or a traceback: labels the loader reads (with and without worker
processes), ``..``/absolute lines in train.txt, incomplete resume
checkpoints; ``on_bad_sample: skip`` trains on. Also predict on an
undecodable image."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from paddle_pssl.pseudo_labels import store
from paddle_pssl.utils.errors import PSSLError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 120
# label defects the loader meets while training: (file list name, breaker)
LABEL_DEFECTS = {
    'wrong_shape': lambda path: store.write_label(path, np.ones((10, 10), np.uint8)),
    'corrupt_zip': lambda path: open(path, 'wb').write(b'PK\x03\x04 cut short'),
    'object_array': lambda path: np.savez(path, arr_0=np.array([[1, None]], dtype=object)),
    'three_d': lambda path: np.savez(path, arr_0=np.ones((72, 96, 3), np.uint8)),
}


@pytest.fixture(scope='module')
def bad_store(toy_pssl, tmp_path_factory):
    """A copy of the toy store with one file list per defect: a good label and
    a bad one (batch size 2 meets the bad one in the first batch), and a
    config that trains a small model on 32x32 crops of it."""
    tmp = tmp_path_factory.mktemp('bad_store')
    root = tmp / 'pssl'
    shutil.copytree(toy_pssl['pssl_root'], root)
    rels = open(root / store.FILE_LIST).read().split()
    lists = {}
    for k, (kind, breaker) in enumerate(LABEL_DEFECTS.items(), 1):
        path = str(root / rels[k])
        if kind == 'object_array':  # np.savez appends .npz to a name without it
            path = path[:-len('.npz')]
        breaker(path)
        (root / f'{kind}.txt').write_text(f'{rels[0]}\n{rels[k]}\n')
        lists[kind] = (f'{kind}.txt', str(root / rels[k]))
    (root / 'dotdot.txt').write_text(f'{rels[0]}\n../{rels[5]}\n')
    # every batch of 2 holds the bad label, which skip mode replaces by the next good one
    (root / 'skip.txt').write_text(f'{rels[1]}\n{rels[0]}\n')
    (root / 'good.txt').write_text(f'{rels[0]}\n{rels[5]}\n')
    cfg = tmp / 'cfg.yml'
    cfg.write_text(yaml.safe_dump({
        '_base_': os.path.join(REPO, 'configs', 'benchmark', 'pretrain_pssl.yml'),
        'batch_size': 2, 'iters': 3,
        'train_dataset': {'imagenet_root': toy_pssl['imagenet_root'], 'pssl_root': str(root),
                          'use_confidence': True,
                          'transforms': [{'type': 'Resize', 'target_size': [32, 32]},
                                         {'type': 'Normalize'}]},
        'val_dataset': {'type': 'Dataset', 'dataset_root': str(tmp), 'val_path': str(root / 'good.txt'),
                        'num_classes': 1001, 'mode': 'val',
                        'transforms': [{'type': 'Resize', 'target_size': [32, 32]},
                                       {'type': 'Normalize'}]}}))
    return {'root': root, 'rels': rels, 'lists': lists, 'cfg': str(cfg), 'tmp': tmp}


def _train(cfg, *args):
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop('PSSL_DEBUG', None)
    return subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'train.py'), '-c', cfg,
                           '--log_iters', '1', '--seed', '0', *args],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env)


def _one_error(result):
    """The run's single ``error:`` line (asserting exit 2 and no traceback)."""
    out = result.stdout + result.stderr
    errors = [line for line in out.splitlines() if line.startswith('error: ')]
    assert result.returncode == 2, out[-3000:]
    assert 'Traceback' not in out, out[-3000:]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize('workers', [0, 2])
@pytest.mark.parametrize('kind', list(LABEL_DEFECTS))
def test_a_bad_label_ends_training_with_one_line(bad_store, tmp_path, kind, workers):
    file_list, label = bad_store['lists'][kind]
    result = _train(bad_store['cfg'], '--num_workers', str(workers), '--save_dir', str(tmp_path),
                    '-o', f'train_dataset.file_list={file_list}')
    error = _one_error(result)
    assert error.startswith(f'error: {label}: '), error
    # stopped before any step was saved
    assert not [n for n in os.listdir(tmp_path) if n.startswith('iter_')]


def test_a_dotdot_line_is_refused_with_file_and_line(bad_store, tmp_path):
    result = _train(bad_store['cfg'], '--save_dir', str(tmp_path),
                    '-o', 'train_dataset.file_list=dotdot.txt')
    error = _one_error(result)
    assert f"{bad_store['root'] / 'dotdot.txt'}:2: path '../" in error, error
    assert "'..' part" in error


def test_skip_mode_trains_on_with_workers(bad_store, tmp_path):
    result = _train(bad_store['cfg'], '--num_workers', '2', '--save_dir', str(tmp_path),
                    '--save_interval', '3', '-o', 'train_dataset.file_list=skip.txt',
                    'train_dataset.on_bad_sample=skip')
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert 'Traceback' not in out and 'skipped: ' in out, out[-3000:]
    assert 'iter: 3/3' in out
    assert os.path.isfile(tmp_path / 'iter_3' / 'model.pdparams')


@pytest.fixture(scope='module')
def resumed(bad_store):
    """Train 3 iterations keeping 2 checkpoints, then resume from iter_3 to 5."""
    save_dir = bad_store['tmp'] / 'ckpt'
    common = ('--save_dir', str(save_dir), '--save_interval', '1', '--keep_checkpoint_max', '2',
              '-o', 'train_dataset.file_list=good.txt')
    first = _train(bad_store['cfg'], '--iters', '3', *common)
    assert first.returncode == 0, first.stderr[-3000:]
    after_first = sorted(n for n in os.listdir(save_dir) if n.startswith('iter_'))
    # a checkpoint a kill left half written: only the parameters arrived
    os.makedirs(save_dir / 'iter_4')
    shutil.copy(save_dir / 'iter_3' / 'model.pdparams', save_dir / 'iter_4')
    incomplete = _train(bad_store['cfg'], '--iters', '5', '--resume_model', str(save_dir / 'iter_4'),
                        *common)
    second = _train(bad_store['cfg'], '--iters', '5', '--resume_model', str(save_dir / 'iter_3'),
                    *common)
    assert second.returncode == 0, second.stderr[-3000:]
    return {'save_dir': save_dir, 'after_first': after_first, 'incomplete': incomplete,
            'second': second}


def test_an_incomplete_resume_checkpoint_names_the_newest_complete_one(resumed):
    error = _one_error(resumed['incomplete'])
    save_dir = resumed['save_dir']
    assert error.startswith(f"error: {save_dir / 'iter_4'}: incomplete checkpoint (model.pdopt missing)")
    assert error.endswith(f"newest whole checkpoint beside it: {save_dir / 'iter_3'}"), error


def test_keep_checkpoint_max_holds_across_a_resume(resumed):
    assert resumed['after_first'] == ['iter_2', 'iter_3']
    out = resumed['second'].stdout + resumed['second'].stderr
    assert 'iter: 4/5' in out and 'iter: 3/5' not in out   # resumed, not restarted
    left = sorted(n for n in os.listdir(resumed['save_dir']) if n.startswith('iter_'))
    # the half-written iter_4 was replaced by the resumed run's own
    assert left == ['iter_4', 'iter_5'], left
    # beside them only the VisualDL logs and the compact head's record
    assert {n for n in os.listdir(resumed['save_dir']) if not n.startswith(('iter_', 'vdl'))} <= \
        {'label_space.json'}
    assert all(sorted(os.listdir(resumed['save_dir'] / n)) == ['model.pdopt', 'model.pdparams']
               for n in left)


def test_predict_names_an_undecodable_image(bad_store, resumed, tmp_path):
    from paddle_pssl.tools_impl import predict_main
    images = tmp_path / 'images'
    images.mkdir()
    bad = images / 'broken.jpg'
    bad.write_bytes(b'\xff\xd8 not really a jpeg')
    with pytest.raises(PSSLError, match=f'^{bad}: cannot decode image'):
        predict_main(['-c', bad_store['cfg'], '--model_path',
                      str(resumed['save_dir'] / 'iter_5' / 'model.pdparams'),
                      '--image_path', str(images), '--save_dir', str(tmp_path / 'out')])


def test_the_dataset_hands_errors_over_in_shape(bad_store, toy_pssl):
    """In a run the bad sample comes as a stand-in shaped like a good one,
    and the batch raises the label's own one-line error."""
    from paddle.io import DataLoader
    from paddleseg import transforms as T
    from paddle_pssl.datasets.pssl import SAMPLE_ERROR, WeightedPSSLDataset, raise_sample_error
    file_list, label = bad_store['lists']['three_d']
    ds = WeightedPSSLDataset([T.Normalize()], toy_pssl['imagenet_root'], str(bad_store['root']),
                             use_confidence=True, file_list=file_list)
    with pytest.raises(PSSLError, match='must be 2-D'):
        ds[1]
    ds.hand_off_errors = True
    good, stand_in = ds[0], ds[1]
    assert good[SAMPLE_ERROR] == '' and stand_in[SAMPLE_ERROR].endswith('must be 2-D, got shape (72, 96, 3)')
    for key in ('img', 'label', 'weight'):
        assert good[key].shape == stand_in[key].shape
    assert np.all(stand_in['label'] == ds.IGNORE_INDEX)
    batch = next(iter(DataLoader(ds, batch_size=2, return_list=True)))
    with pytest.raises(PSSLError, match=f'^{label}: label mask must be 2-D'):
        raise_sample_error(batch)
    raise_sample_error({'img': None})   # other datasets' batches pass
