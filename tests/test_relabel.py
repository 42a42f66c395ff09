"""Cyclic relabelling: probabilities by hand, flip / multi-scale averaging, the
store it writes is read by both datasets, resume, one-line errors."""
import json
import os

import numpy as np
import paddle
import pytest
import yaml
from paddleseg import transforms as T
from paddleseg.datasets import PSSLDataset

from paddle_pssl.datasets import WeightedPSSLDataset
from paddle_pssl.pseudo_labels import relabel, store
from paddle_pssl.config import load_config
from paddle_pssl.utils import PSSLError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------ rules by hand
def test_image_label_rule_and_confidence_by_hand():
    p_bg = np.array([[0.6, 0.2]])
    p_c = np.array([[0.3, 0.7]])
    mask, conf = relabel.label_from_probs(np.stack([p_bg, p_c]), class_id=4)
    np.testing.assert_array_equal(mask, [[0, 1]])
    np.testing.assert_allclose(conf, [[0.6 / 0.9, 0.7 / 0.9]], rtol=1e-6)


def test_class_weights_are_undone_before_deciding():
    # weighted CE with w_bg = 0.1 learns q ~ w p: q = (0.2, 0.6) -> p ~ (2, 0.6)
    probs = np.array([[[0.2]], [[0.6]]])
    mask, conf = relabel.label_from_probs(probs, 4, weights=[0.1, 1.0])
    assert mask[0, 0] == 0 and conf[0, 0] == pytest.approx(2 / 2.6, rel=1e-6)
    assert relabel.label_from_probs(probs, 4)[0][0, 0] == 1      # raw softmax: object
    with pytest.raises(PSSLError, match='3 class weights for 2'):
        relabel.label_from_probs(probs, 4, weights=[1, 1, 1])


def test_argmax_rule_by_hand():
    probs = np.zeros((4, 1, 3))
    probs[:, 0, 0] = [0.1, 0.2, 0.6, 0.1]    # class 2 wins -> object
    probs[:, 0, 1] = [0.1, 0.5, 0.3, 0.1]    # another class wins -> background
    probs[:, 0, 2] = [0.1, 0.1, 0.3, 0.5]    # background (id 3 here) wins
    mask, conf = relabel.label_from_probs(probs, class_id=2, rule='argmax')
    np.testing.assert_array_equal(mask, [[1, 0, 0]])
    np.testing.assert_allclose(conf, [[0.6, 0.5, 0.5]])


def test_class_weights_read_from_the_loss(tmp_path):
    cfg = load_config(os.path.join(REPO, 'configs', 'benchmark', 'pretrain_pssl.yml'))
    w = relabel.loss_class_weights(cfg)
    assert w.shape == (1001,) and w[1000] == pytest.approx(0.1) and w[:1000].min() == 1
    cfg = load_config(os.path.join(REPO, 'configs', 'benchmark', 'finetune.yml'))
    assert relabel.loss_class_weights(cfg) is None


# ------------------------------------------------------------ flip and scales
class _Ramp(paddle.nn.Layer):
    """Logits (r(x), 0) with r the column index / W: not flip-equivariant."""

    def forward(self, x):
        w = x.shape[3]
        ramp = paddle.arange(w, dtype='float32') / w
        ramp = paddle.expand(ramp.reshape([1, 1, 1, w]), [x.shape[0], 1, x.shape[2], w])
        return [paddle.concat([ramp, paddle.zeros_like(ramp)], axis=1)]


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def test_flip_averages_the_mirrored_pass_by_hand():
    batch = np.zeros((2, 3, 3, 4), np.float32)
    plain = relabel.predict_probs(_Ramp(), batch)
    r = np.arange(4) / 4
    np.testing.assert_allclose(plain[0, 0, 0], _sigmoid(r), rtol=1e-5)
    flipped = relabel.predict_probs(_Ramp(), batch, flip_horizontal=True)
    np.testing.assert_allclose(flipped[1, 0, 2], (_sigmoid(r) + _sigmoid(r[::-1])) / 2, rtol=1e-5)
    np.testing.assert_allclose(flipped.sum(axis=1), 1.0, rtol=1e-5)


def test_scales_resize_back_and_channels_select():
    batch = np.random.default_rng(0).normal(size=(2, 3, 8, 12)).astype(np.float32)
    one = relabel.predict_probs(_Ramp(), batch, scales=[1.0])
    twice = relabel.predict_probs(_Ramp(), batch, scales=[1.0, 1.0])
    np.testing.assert_allclose(one, twice, rtol=1e-6)
    multi = relabel.predict_probs(_Ramp(), batch, scales=[0.5, 1.0, 1.5], flip_horizontal=True)
    assert multi.shape == (2, 2, 8, 12)
    assert not np.allclose(multi, one)           # the other scales change the average
    picked = relabel.predict_probs(_Ramp(), batch, scales=[0.5, 1.0, 1.5], flip_horizontal=True,
                                   channels=[[1, 0], [0, 0]])
    np.testing.assert_allclose(picked[0], multi[0, ::-1], rtol=1e-6)
    np.testing.assert_allclose(picked[1, 1], multi[1, 0], rtol=1e-6)
    with pytest.raises(PSSLError, match='out of range'):
        relabel.predict_probs(_Ramp(), batch, channels=[[1000, 0], [1000, 1]])


# ------------------------------------------------------------ the tool
def _saved_model(toy_pssl, tmp, label_space):
    """The benchmark's DeepLabV3+-ResNet18_vd in ``label_space``, random weights, saved."""
    cfg_path = tmp / 'pretrain.yml'
    cfg_path.write_text(yaml.safe_dump({
        '_base_': os.path.join(REPO, 'configs', 'benchmark', 'pretrain_pssl.yml'),
        'train_dataset': {'imagenet_root': toy_pssl['imagenet_root'], 'label_space': label_space,
                          'pssl_root': toy_pssl['pssl_root'],
                          'transforms': [{'type': 'RandomPaddingCrop', 'crop_size': [48, 48],
                                          'label_padding_value': 1001}, {'type': 'Normalize'}]}}))
    from paddle_pssl.config.paddleseg import seg_builder
    paddle.seed(0)
    model = seg_builder(load_config(str(cfg_path))).model
    weights = tmp / 'model.pdparams'
    paddle.save(model.state_dict(), str(weights))
    return str(cfg_path), str(weights)


@pytest.fixture(scope='module')
def model_files(toy_pssl, tmp_path_factory):
    """In upstream's 1001-class space."""
    return _saved_model(toy_pssl, tmp_path_factory.mktemp('relabel_model'), 'upstream')


def test_a_compact_model_relabels_with_its_own_channels(toy_pssl, tmp_path):
    """3 store classes: 4 outputs, background 3; the loss's weight on it is undone."""
    compact = _saved_model(toy_pssl, tmp_path, 'compact')
    out = tmp_path / 'store'
    counts = _relabel(compact, toy_pssl, out)
    assert counts['written'] == 12
    ours = WeightedPSSLDataset([T.Normalize()], toy_pssl['imagenet_root'], str(out))
    assert set(np.unique(ours[0]['label'])) <= {0, 1000}
    manifest = json.load(open(out / store.MANIFEST))
    assert manifest['relabel']['class_weights_undone'] == {'3': pytest.approx(0.1)}
    # argmax over the compact space's 4 outputs
    assert _relabel(compact, toy_pssl, tmp_path / 'argmax', '--rule', 'argmax')['written'] == 12


def _relabel(model_files, toy_pssl, out, *extra):
    cfg_path, weights = model_files
    return relabel.relabel_main(['-c', cfg_path, '--model_path', weights,
                                 '--image_root', toy_pssl['imagenet_root'],
                                 '--pssl_root', toy_pssl['pssl_root'], '--save_root', str(out),
                                 '--no_progress', '--batch_size', '5', *extra])


@pytest.fixture(scope='module')
def relabelled(model_files, toy_pssl, tmp_path_factory):
    out = tmp_path_factory.mktemp('relabelled') / 'store'
    counts = _relabel(model_files, toy_pssl, out, '--flip_horizontal', '--scales', '0.75')
    return out, counts


def test_relabelled_store_is_read_by_both_datasets(relabelled, toy_pssl):
    out, counts = relabelled
    assert counts['written'] == 12 and counts['skipped'] == 0
    assert open(out / store.FILE_LIST).read() == open(
        os.path.join(toy_pssl['pssl_root'], store.FILE_LIST)).read()
    ours = WeightedPSSLDataset([T.Normalize()], toy_pssl['imagenet_root'], str(out),
                               use_confidence=True)
    upstream = PSSLDataset([T.Normalize()], toy_pssl['imagenet_root'], str(out))
    assert len(ours) == len(upstream) == 12
    for i in (0, 11):
        a, b = ours[i], upstream[i]
        np.testing.assert_array_equal(a['label'], b['label'])
        assert set(np.unique(a['label'])) <= {0, 1, 2, 1000}
        assert a['weight'].min() >= 0.5 - 1e-3 and a['weight'].max() <= 1.0
    manifest = json.load(open(out / store.MANIFEST))
    assert manifest['labels'] == 12
    assert manifest['relabel']['scales'] == [0.75] and manifest['relabel']['flip_horizontal']
    assert manifest['relabel']['class_weights_undone'] == {'1000': pytest.approx(0.1)}


def test_relabel_resumes_to_the_same_files(relabelled, model_files, toy_pssl, tmp_path):
    out, _ = relabelled
    import shutil
    copy = tmp_path / 'copy'
    shutil.copytree(out, copy)
    first = sorted(copy.rglob('*_eiseg.npz'))[0]
    reference = store.read_label(str(first))
    os.remove(first)
    counts = _relabel(model_files, toy_pssl, copy, '--flip_horizontal', '--scales', '0.75')
    assert counts['written'] == 1 and counts['existing'] == 11
    mask, conf = store.read_label(str(first))
    np.testing.assert_array_equal(mask, reference[0])
    np.testing.assert_allclose(conf, reference[1], atol=1e-3)


def test_relabel_from_image_root_and_synsets(model_files, toy_pssl, tmp_path):
    cfg_path, weights = model_files
    synsets = os.path.join(toy_pssl['pssl_root'], store.SYNSETS)
    counts = relabel.relabel_main(['-c', cfg_path, '--model_path', weights, '--image_root',
                                   toy_pssl['imagenet_root'], '--synsets', synsets,
                                   '--save_root', str(tmp_path / 'new'), '--no_progress',
                                   '--rule', 'argmax', '--shard', '1/3'])
    assert counts['written'] == 4
    assert len(open(tmp_path / 'new' / store.FILE_LIST).read().split()) == 4


def test_val_transforms_that_resize_still_give_image_sized_labels(model_files, toy_pssl, tmp_path):
    cfg_path, weights = model_files
    resized = tmp_path / 'resized.yml'
    resized.write_text(yaml.safe_dump({'_base_': cfg_path, 'val_dataset': {
        'type': 'Dataset', 'dataset_root': str(tmp_path), 'val_path': 'none.txt', 'num_classes': 1001,
        'mode': 'val', 'transforms': [{'type': 'Resize', 'target_size': [48, 40]}, {'type': 'Normalize'}]}}))
    model, transforms, weights_, _ = relabel.load_model(str(resized), weights)
    assert [type(t).__name__ for t in transforms] == ['Resize', 'Normalize']
    items, names = relabel.items_from_store(toy_pssl['imagenet_root'], toy_pssl['pssl_root'])
    out = tmp_path / 'store'
    relabel.Relabeller(model, transforms, items[:2], names, str(out), class_weights=weights_).run(
        progress=False)
    for item in items[:2]:
        mask, _ = store.read_label(os.path.join(out, store.label_relpath(item.rel)))
        assert mask.shape == (72, 96)


def test_relabel_refuses_overwriting_its_source(model_files, toy_pssl):
    from paddle_pssl.utils.cli import run
    cfg_path, weights = model_files
    with pytest.raises(SystemExit) as exit_info:
        run(relabel.relabel_main, ['-c', cfg_path, '--model_path', weights, '--image_root',
                                   toy_pssl['imagenet_root'], '--pssl_root', toy_pssl['pssl_root'],
                                   '--save_root', toy_pssl['pssl_root']])
    assert exit_info.value.code == 2
