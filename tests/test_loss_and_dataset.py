"""Weighted loss by hand; the dataset against upstream PSSLDataset; bad input."""
import os
import shutil

import numpy as np
import paddle
import pytest
from paddleseg import transforms as T
from paddleseg.datasets import PSSLDataset

from paddle_pssl.core.train import loss_computation
from paddle_pssl.datasets import WeightedPSSLDataset
from paddle_pssl.losses import PSSLCrossEntropyLoss
from paddle_pssl.pseudo_labels import store
from paddle_pssl.utils import PSSLError


def _hand_loss(logit, label, class_w, pixel_w, ignore):
    z = logit - logit.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    num = den = 0.0
    n, _, h, w = logit.shape
    for b in range(n):
        for i in range(h):
            for j in range(w):
                y = label[b, i, j]
                if y == ignore:
                    continue
                wt = class_w[y] * (1.0 if pixel_w is None else pixel_w[b, i, j])
                num += wt * -logp[b, y, i, j]
                den += wt
    return num / den


@pytest.mark.parametrize('use_pixel_weight', [False, True])
def test_weighted_loss_equals_hand_computation(use_pixel_weight):
    rng = np.random.default_rng(0)
    logit = rng.normal(size=(2, 4, 3, 5)).astype('float32')
    label = rng.integers(0, 4, size=(2, 3, 5)).astype('int64')
    label[0, 0, :3] = 5   # ignored
    label[1, 2, 4] = 5
    pixel_w = rng.uniform(0, 1, size=(2, 3, 5)).astype('float32') if use_pixel_weight else None
    class_w = np.array([1.0, 1.0, 1.0, 0.1])
    loss_fn = PSSLCrossEntropyLoss(background_weight=0.1, background_index=3, ignore_index=5)
    got = loss_fn(paddle.to_tensor(logit), paddle.to_tensor(label),
                  None if pixel_w is None else paddle.to_tensor(pixel_w))
    want = _hand_loss(logit, label, class_w, pixel_w, ignore=5)
    assert abs(float(got) - want) < 1e-5
    # an explicit weight list gives the same value
    got_list = PSSLCrossEntropyLoss(weight=class_w.tolist(), ignore_index=5)(
        paddle.to_tensor(logit), paddle.to_tensor(label),
        None if pixel_w is None else paddle.to_tensor(pixel_w))
    assert abs(float(got_list) - want) < 1e-5


def test_unweighted_loss_equals_plain_cross_entropy():
    rng = np.random.default_rng(1)
    logit = paddle.to_tensor(rng.normal(size=(1, 3, 4, 4)).astype('float32'))
    label = paddle.to_tensor(rng.integers(0, 3, size=(1, 4, 4)).astype('int64'))
    ours = PSSLCrossEntropyLoss(ignore_index=255)(logit, label)
    ref = paddle.nn.functional.cross_entropy(logit.transpose([0, 2, 3, 1]), label.unsqueeze(-1))
    assert abs(float(ours) - float(ref)) < 1e-6


def test_hook_routes_pixel_weights_and_returns_shape_1_losses():
    rng = np.random.default_rng(2)
    logit = paddle.to_tensor(rng.normal(size=(1, 3, 2, 2)).astype('float32'))
    label = paddle.to_tensor(np.array([[[0, 1], [2, 1]]], dtype='int64'))
    weight = paddle.to_tensor(np.array([[[1.0, 0.0], [0.0, 0.0]]], dtype='float32'))
    losses = {'types': [PSSLCrossEntropyLoss(ignore_index=255)], 'coef': [1.0]}
    only_first = loss_computation([logit], losses, {'label': label, 'weight': weight})
    assert only_first[0].shape == [1]
    ce0 = float(paddle.nn.functional.cross_entropy(
        logit.transpose([0, 2, 3, 1])[:, :1, :1], label[:, :1, :1].unsqueeze(-1)))
    assert abs(float(only_first[0]) - ce0) < 1e-6
    unweighted = loss_computation([logit], losses, {'label': label})
    assert abs(float(unweighted[0]) - ce0) > 1e-3   # the weight map changed the loss


def _tf():
    return [T.Normalize()]


def test_dataset_equals_upstream_pssldataset(toy_pssl):
    upstream = PSSLDataset(_tf(), toy_pssl['imagenet_root'], toy_pssl['pssl_root'])
    ours = WeightedPSSLDataset(_tf(), toy_pssl['imagenet_root'], toy_pssl['pssl_root'])
    assert len(upstream) == len(ours) == 12
    classes_seen = set()
    for i in range(len(ours)):
        a, b = upstream[i], ours[i]
        np.testing.assert_array_equal(a['img'], b['img'])
        np.testing.assert_array_equal(a['label'], b['label'])
        assert a['label'].dtype == b['label'].dtype
        classes_seen.update(np.unique(b['label']).tolist())
    assert classes_seen == {0, 1, 2, 1000}


def test_confidence_goes_through_transforms_with_the_label(toy_pssl, tmp_path):
    # confidence 1.0 on the object, 0.5 on background: after random geometric
    # transforms the two maps must still agree pixel for pixel.
    root = tmp_path / 'store'
    shutil.copytree(toy_pssl['pssl_root'], root)
    for rel in open(root / store.FILE_LIST).read().split():
        mask, _ = store.read_label(str(root / rel))
        store.write_label(str(root / rel), mask, np.where(mask == 1, 1.0, 0.5))
    transforms = [T.ResizeStepScaling(0.5, 2.0, 0.25), T.RandomPaddingCrop([80, 80], label_padding_value=1001),
                  T.RandomHorizontalFlip(), T.Normalize()]
    ds = WeightedPSSLDataset(transforms, toy_pssl['imagenet_root'], str(root), use_confidence=True)
    np.random.seed(3)
    for i in range(len(ds)):
        d = ds[i]
        label, weight = d['label'], d['weight']
        assert weight.shape == label.shape == (80, 80)
        obj = (label < 1000)
        assert np.all(weight[obj] == 1.0)
        assert np.all(weight[label == 1000] == 0.5)


def _broken_store(toy_pssl, tmp_path):
    root = tmp_path / 'broken'
    shutil.copytree(toy_pssl['pssl_root'], root)
    rels = open(root / store.FILE_LIST).read().split()
    return root, rels


def test_missing_label_file_names_the_file(toy_pssl, tmp_path):
    root, rels = _broken_store(toy_pssl, tmp_path)
    os.remove(root / rels[0])
    ds = WeightedPSSLDataset(_tf(), toy_pssl['imagenet_root'], str(root))
    with pytest.raises(PSSLError, match=rels[0].split('/')[-1] + '.*not found'):
        ds[0]


def test_corrupt_label_file_names_the_file_and_skip_mode_goes_on(toy_pssl, tmp_path):
    root, rels = _broken_store(toy_pssl, tmp_path)
    (root / rels[1]).write_bytes(b'not a zip file')
    ds = WeightedPSSLDataset(_tf(), toy_pssl['imagenet_root'], str(root))
    with pytest.raises(PSSLError) as e:
        ds[1]
    assert rels[1] in str(e.value) and 'corrupt' in str(e.value)
    assert '\n' not in str(e.value)
    skipping = WeightedPSSLDataset(_tf(), toy_pssl['imagenet_root'], str(root), on_bad_sample='skip')
    np.testing.assert_array_equal(skipping[1]['label'], ds[2]['label'])


def test_image_label_size_mismatch_names_both(toy_pssl, tmp_path):
    root, rels = _broken_store(toy_pssl, tmp_path)
    store.write_label(str(root / rels[2]), np.zeros((10, 10), np.uint8))
    ds = WeightedPSSLDataset(_tf(), toy_pssl['imagenet_root'], str(root))
    with pytest.raises(PSSLError, match=r'label is 10x10 but its image .* is 96x72'):
        ds[2]


def test_class_folder_not_in_synsets(toy_pssl, tmp_path):
    root, rels = _broken_store(toy_pssl, tmp_path)
    with open(root / store.FILE_LIST, 'a') as f:
        f.write('train/n12345678/n12345678_0.JPEG_eiseg.npz\n')
    with pytest.raises(PSSLError, match=r"train.txt:13: class folder 'n12345678' is not in"):
        WeightedPSSLDataset(_tf(), toy_pssl['imagenet_root'], str(root))


def test_corrupt_image_names_the_file(toy_pssl, tmp_path):
    images = tmp_path / 'imagenet'
    shutil.copytree(toy_pssl['imagenet_root'], images)
    rel = open(os.path.join(toy_pssl['pssl_root'], store.FILE_LIST)).readline().strip()
    bad = images / store.image_relpath(rel)
    bad.write_bytes(b'\xff\xd8 truncated')
    ds = WeightedPSSLDataset(_tf(), str(images), toy_pssl['pssl_root'])
    with pytest.raises(PSSLError, match='cannot decode image'):
        ds[0]


def test_calculate_area_shim_counts_like_numpy():
    from paddleseg.utils import metrics
    rng = np.random.default_rng(4)
    pred = rng.integers(0, 4, size=(2, 1, 6, 7))
    label = rng.integers(0, 4, size=(2, 1, 6, 7))
    label[0, 0, :2] = 255
    inter, p_area, l_area = metrics.calculate_area(
        paddle.to_tensor(pred), paddle.to_tensor(label), 4, ignore_index=255)
    valid = label != 255
    for k in range(4):
        assert int(p_area[k]) == np.sum((pred == k) & valid)
        assert int(l_area[k]) == np.sum(label == k)
        assert int(inter[k]) == np.sum((pred == k) & (label == k) & valid)


def test_trainer_refuses_a_dataset_smaller_than_one_batch(toy_pssl):
    from paddle_pssl.core import train
    ds = WeightedPSSLDataset(_tf(), toy_pssl['imagenet_root'], toy_pssl['pssl_root'])
    with pytest.raises(PSSLError, match='12 samples, fewer than batch_size 16'):
        train(None, ds, batch_size=16)
