"""Classifier training (tools/train_cls.py): weights that build_classifier
loads, falling loss, HFPL terms, determinism, config errors, resume."""
import glob
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import paddle_pssl  # noqa: F401  (zlib before paddle)
import paddle

from paddle_pssl.classification import (RESULT_FILE, evaluate_accuracy, load_classification_set,
                                        split_train_val, train_classifier)
from paddle_pssl.classification.dataset import train_batches
from paddle_pssl.classification.train import compute_losses, train_cls_main
from paddle_pssl.classifiers import build_classifier
from paddle_pssl.config import validate
from paddle_pssl.utils.errors import PSSLError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCH = 'MobileNetV1_x0_25'  # a small PaddleClas net with an exact CAM at 64x64 (2x2 map)
SIZE = 64


@pytest.fixture(scope='module')
def toy_cls(tmp_path_factory):
    from paddle_pssl.datasets import toy
    root = tmp_path_factory.mktemp('toy_cls')
    return toy.make_toy_pssl(str(root), num_classes=3, images_per_class=6,
                             image_size=(SIZE, SIZE), seed=0)


def read_rgb_stack(paths):
    import cv2
    return np.stack([cv2.imread(p)[:, :, ::-1] for p in paths])   # toy images are SIZE x SIZE


def make_cfg(toy, **over):
    cfg = {'seed': 0, 'model': {'name': ARCH, 'input_size': SIZE},
           'train_dataset': {'image_root': toy['imagenet_root'], 'val_fraction': 0.2},
           'batch_size': 8, 'iters': 3, 'optimizer': {'lr': 0.05}}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = dict(cfg[key], **value)
        else:
            cfg[key] = value
    return cfg


WORKERS = {'num_workers': 2, 'use_shared_memory': True}
HFPL = {'gap': 0.8, 'gap_loss': 'bce', 'importance_sampling': 0.2, 'feature_similarity': 1.0}


def test_tiny_run_writes_weights_build_classifier_loads(toy_cls, tmp_path):
    save = str(tmp_path / 'run')
    result = train_classifier(make_cfg(toy_cls, loss=HFPL), save, use_vdl=True, log_every=1)
    assert result['num_classes'] == 3 and result['class_names'] == toy_cls['class_names']
    assert len(result['history']) == 3 and result['num_val'] == 3 and result['num_train'] == 15
    with open(os.path.join(save, RESULT_FILE)) as f:
        saved = json.load(f)
    assert saved['weights'] == os.path.join(save, 'model.pdparams')
    assert saved['config']['loss']['importance_sampling'] == 0.2
    # strict load: same keys and shapes; predictions reproduce the run's val accuracy
    clf = build_classifier(ARCH, weights=result['weights'], num_classes=3, input_size=SIZE)
    data = load_classification_set(toy_cls['imagenet_root'], SIZE)
    state = paddle.load(result['weights'])
    assert set(state) == set(clf.model.state_dict())
    val = data.subset(split_train_val(data.labels, 0.2, 0)[1])
    assert evaluate_accuracy(clf, [(read_rgb_stack(val.paths), val.labels)]) == result['val_acc']
    # model.weights initialises another run by shape: a 5-class head stays random
    from paddle_pssl.classification.train import _build_model
    five = _build_model(validate('classifier', make_cfg(toy_cls, model={'weights': result['weights']})),
                        5, 'cls.yml')
    for key, value in five.model.state_dict().items():
        if list(value.shape) == list(state[key].shape):
            np.testing.assert_array_equal(value.numpy(), state[key].numpy())
        else:
            assert value.shape[-1] == 5
    # VisualDL scalars, HFPL terms included
    from visualdl import LogReader
    logs = glob.glob(os.path.join(save, 'vdlrecords.*.log'))
    tags = LogReader(file_path=logs[0]).get_tags()['scalar']
    for tag in ('Train/loss', 'Train/acc', 'Train/loss_is', 'Train/loss_fs', 'Val/acc'):
        assert tag in tags


def test_loss_falls_on_a_fixed_batch(toy_cls, tmp_path):
    # the whole set is one batch, no augmentation: every step sees the same images
    cfg = make_cfg(toy_cls, batch_size=18, iters=8,
                   train_dataset={'val_fraction': 0.0},
                   augment={'flip': False, 'random_resized_crop': [1.0, 1.0]},
                   optimizer={'type': 'adam', 'lr': 0.01, 'decay': 'constant',
                              'weight_decay': 0.0})
    losses = [r['loss'] for r in train_classifier(cfg, str(tmp_path))['history']]
    assert losses[-1] < 0.5 * losses[0], losses


def test_hfpl_terms_are_finite_and_change_the_gradient(toy_cls):
    data = load_classification_set(toy_cls['imagenet_root'], SIZE)
    batch, labels = read_rgb_stack(data.paths[::3]), data.labels[::3]
    base = validate('classifier', {})['loss']

    def grads(**loss):
        paddle.seed(0)
        clf = build_classifier(ARCH, weights='random', num_classes=3, input_size=SIZE)
        clf.model.train()
        cfg = dict(base, **loss)
        out, _ = compute_losses(clf, batch, labels, cfg, 3, np.random.default_rng(0))
        out['loss'].backward()
        return ({k: float(v) for k, v in out.items()},
                np.concatenate([p.grad.numpy().ravel() for p in clf.model.parameters()
                                if p.grad is not None]))

    plain_losses, plain = grads()
    is_losses, with_is = grads(importance_sampling=0.5)
    fs_losses, with_fs = grads(feature_similarity=5.0)
    assert set(is_losses) == {'loss', 'loss_gap', 'loss_is'}
    assert set(fs_losses) == {'loss', 'loss_gap', 'loss_fs'}
    assert all(math.isfinite(v) for v in list(is_losses.values()) + list(fs_losses.values()))
    assert is_losses['loss_gap'] == pytest.approx(plain_losses['loss_gap'], rel=1e-5)
    assert is_losses['loss_is'] > 0 and fs_losses['loss_fs'] != 0
    assert not np.allclose(plain, with_is, rtol=1e-4, atol=1e-7)
    assert not np.allclose(plain, with_fs, rtol=1e-4, atol=1e-7)


def test_cam_logits_pool_to_the_model_logits():
    from paddle_pssl.classification import cam_logits
    paddle.seed(0)
    clf = build_classifier(ARCH, weights='random', num_classes=3, input_size=SIZE)
    features, logits = clf.features_and_logits(paddle.randn([2, 3, SIZE, SIZE]))
    cam = cam_logits(features, clf.fc_layer)
    assert cam.shape == [2, 3, 2, 2]
    np.testing.assert_allclose(cam.mean(axis=[2, 3]).numpy(), logits.numpy(), rtol=1e-4, atol=1e-5)


def test_same_seed_same_first_losses(toy_cls, tmp_path):
    cfg = make_cfg(toy_cls, iters=2, loss={'importance_sampling': 0.2})
    first = train_classifier(cfg, str(tmp_path / 'a'))['history']
    again = train_classifier(cfg, str(tmp_path / 'b'))['history']
    other = train_classifier(dict(cfg, seed=1), str(tmp_path / 'c'))['history']
    assert [r['loss'] for r in first] == [r['loss'] for r in again]
    # and the same weights, with the default readers or none
    alone = make_cfg(toy_cls, iters=2, loss={'importance_sampling': 0.2},
                     train_dataset={'num_workers': 0})
    assert [r['loss'] for r in train_classifier(alone, str(tmp_path / 'w0'))['history']] \
        == [r['loss'] for r in first]
    for run in ('b', 'w0'):
        mine, theirs = (paddle.load(str(tmp_path / d / 'model.pdparams')) for d in ('a', run))
        for key in mine:
            np.testing.assert_array_equal(mine[key].numpy(), theirs[key].numpy())
    assert first[0]['loss'] != other[0]['loss']
    # fixed ParamAttr names (ShuffleNetV2): a second run in the same process still builds
    cfg['model'] = {'name': 'ShuffleNetV2_x0_25', 'input_size': SIZE}
    one = train_classifier(dict(cfg, iters=1), str(tmp_path / 'd'))['history']
    two = train_classifier(dict(cfg, iters=1), str(tmp_path / 'e'))['history']
    assert one[0]['loss'] == two[0]['loss']


def test_resume_continues_from_the_saved_iteration(toy_cls, tmp_path):
    cfg = make_cfg(toy_cls, iters=4, save_interval=2, loss={'importance_sampling': 0.2},
                   optimizer={'lr': 0.05, 'decay': 'cosine'})
    full = train_classifier(cfg, str(tmp_path / 'full'))
    assert sorted(os.listdir(tmp_path / 'full' / 'iter_2')) == [
        'model.pdopt', 'model.pdparams', 'state.json']
    resumed = train_classifier(cfg, str(tmp_path / 'resumed'),
                               resume=str(tmp_path / 'full' / 'iter_2'))
    assert resumed['resumed_from'] == 2
    assert [r['iter'] for r in resumed['history']] == [1, 2, 3, 4]
    for a, b in zip(full['history'][2:], resumed['history'][2:]):
        assert a['lr'] == pytest.approx(b['lr'])
        assert a['loss'] == pytest.approx(b['loss'], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize('over, needle', [
    ({'loss': {'importance_samplng': 0.2}},
     "unknown key 'loss.importance_samplng' (did you mean 'importance_sampling'?)"),
    ({'itters': 5}, "unknown key 'itters' (did you mean 'iters'?)"),
    ({'optimizer': {'decay': 'step'}}, "optimizer.decay 'step'"),
])
def test_bad_config_is_one_line_naming_the_key(toy_cls, over, needle):
    with pytest.raises(PSSLError) as err:
        validate('classifier', make_cfg(toy_cls, **over), 'cls.yml')
    message = str(err.value)
    assert needle in message and message.startswith('cls.yml: ') and '\n' not in message


def test_bad_inputs_fail_before_training(toy_cls, tmp_path):
    with pytest.raises(PSSLError, match='train_dataset.image_root is not a directory'):
        train_classifier(make_cfg(toy_cls, train_dataset={'image_root': str(tmp_path / 'x')}),
                         str(tmp_path / 'o'))
    (tmp_path / 'empty' / 'train').mkdir(parents=True)
    with pytest.raises(PSSLError, match='no class folders'):
        train_classifier(make_cfg(toy_cls, train_dataset={'image_root': str(tmp_path / 'empty')}),
                         str(tmp_path / 'o'))
    with pytest.raises(PSSLError) as err:
        train_classifier(make_cfg(toy_cls, model={'name': 'ResNet18_vdd'}), str(tmp_path / 'o'))
    assert "model.name 'ResNet18_vdd'" in str(err.value) and '\n' not in str(err.value)
    with pytest.raises(PSSLError, match='need the CAM'):  # no exact CAM in MobileNetV3
        train_classifier(make_cfg(toy_cls, model={'name': 'MobileNetV3_small_x0_35'},
                                  loss={'feature_similarity': 1.0}), str(tmp_path / 'o'))


def test_unreadable_image_is_skipped_or_named(tmp_path):
    import cv2
    for name in ('a', 'b'):
        (tmp_path / 'train' / name).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(tmp_path / 'train' / name / f'{i}.png'), np.full((20, 30, 3), i * 90, np.uint8))
    (tmp_path / 'train' / 'b' / 'broken.jpg').write_bytes(b'not a jpeg')
    data = load_classification_set(str(tmp_path), 16, loader_cfg=WORKERS)
    assert len(data) == 4 and data.skipped == ['train/b/broken.jpg']
    assert data.class_names == ['a', 'b'] and list(data.labels) == [0, 0, 1, 1]
    with pytest.raises(PSSLError, match='broken.jpg: cannot decode image'):
        load_classification_set(str(tmp_path), 16, on_bad_image='raise', loader_cfg=WORKERS)
    # an image gone after the check stops the run where its batch arrives, naming it
    os.remove(tmp_path / 'train' / 'a' / '1.png')
    batches = train_batches(data, 4, 0, 0, 3, AUGMENT, WORKERS)
    with pytest.raises(PSSLError, match=r'train/a/1\.png: image file not found'):
        list(batches)


AUGMENT = {'out_size': 16, 'flip': True, 'scale': (0.35, 1.0), 'ratio': (0.75, 4 / 3)}


def test_batches_are_the_same_for_any_worker_count_and_after_resume(toy_cls):
    data = load_classification_set(toy_cls['imagenet_root'], SIZE)
    aug = dict(AUGMENT, out_size=48)
    alone = list(train_batches(data, 5, 3, 0, 6, aug, {'num_workers': 0, 'use_shared_memory': False}))
    workers = list(train_batches(data, 5, 3, 0, 6, aug, WORKERS))
    resumed = list(train_batches(data, 5, 3, 4, 6, aug, WORKERS))
    assert len(alone) == len(workers) == 6 and len(resumed) == 2
    for a, b in zip(alone, workers[:4] + resumed):
        assert a['image'].shape == (5, 48, 48, 3) and a['image'].dtype == np.uint8
        for key in ('image', 'label', 'index'):
            np.testing.assert_array_equal(a[key], b[key])
    assert list(alone[0]['label']) == [data.labels[i] for i in alone[0]['index']]
    # 6 batches of 5 cover the 18 images with fresh crops: no two crops alike
    assert len({b['image'][j].tobytes() for b in alone for j in range(5)}) == 30


def test_cli_flags_and_one_line_error(toy_cls, tmp_path):
    cfg = os.path.join(ROOT, 'configs', 'classifiers', 'resnet18_vd_source_hfpl.yml')
    result = train_cls_main(['-c', cfg, '--save_dir', str(tmp_path / 'cli'), '--iters', '2',
                             '--batch_size', '4', '--seed', '3', '--opts',
                             f"train_dataset.image_root={toy_cls['imagenet_root']}",
                             f'model.name={ARCH}', 'model.output_stride=32'])
    assert result['iters'] == 2 and result['config']['seed'] == 3
    assert result['config']['batch_size'] == 4 and 'loss_fs' in result['history'][0]
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'train_cls.py'), '-c', cfg,
         '--opts', 'loss.fs_sigmaa=2'], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert err[-1] == f"error: {cfg}: unknown key 'loss.fs_sigmaa' (did you mean 'fs_sigma'?)"
