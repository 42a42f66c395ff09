"""The benchmark's dataset maker and the classifier -> backbone conversion."""
import hashlib
import os

import cv2
import numpy as np
import paddle
import pytest

from paddle_pssl.datasets import synthetic


def _digest(root):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            with open(os.path.join(dirpath, name), 'rb') as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


def test_source_set_is_seeded_and_masks_are_exact(tmp_path):
    a = synthetic.make_source_set(str(tmp_path / 'a'), num_classes=3, images_per_class=4, image_size=48, seed=5)
    b = synthetic.make_source_set(str(tmp_path / 'b'), num_classes=3, images_per_class=4, image_size=48, seed=5)
    c = synthetic.make_source_set(str(tmp_path / 'c'), num_classes=3, images_per_class=4, image_size=48, seed=6)
    assert _digest(a['image_root']) == _digest(b['image_root'])
    assert _digest(a['image_root']) != _digest(c['image_root'])
    assert len(a['class_names']) == 3 and len(set(a['classes'])) == 3
    for name in a['class_names']:
        for i in range(4):
            rel = f'train/{name}/{name}_{i}.png'
            image = cv2.imread(os.path.join(a['image_root'], rel))
            mask = cv2.imread(os.path.join(a['gt_root'], rel), cv2.IMREAD_GRAYSCALE) > 0
            assert image.shape == (48, 48, 3)
            assert 0.03 < mask.mean() < 0.8
            # the object was painted with its texture: inside differs from a redraw of the background
            assert mask.any() and (~mask).any()


def test_target_set_labels_cover_the_classes(tmp_path):
    t = synthetic.make_target_set(str(tmp_path), num_classes=3, num_train=6, num_test=10, image_size=48, seed=2)
    assert t['num_classes'] == 4
    seen = set()
    for split in ('train', 'test'):
        lines = open(os.path.join(tmp_path, f'{split}.txt')).read().split('\n')
        for line in filter(None, lines):
            img, lbl = line.split()
            label = cv2.imread(os.path.join(tmp_path, lbl), cv2.IMREAD_GRAYSCALE)
            assert label.shape == (48, 48) and label.max() <= 3
            seen |= set(np.unique(label).tolist())
    assert seen == {0, 1, 2, 3}
    source_shapes = {c[0] for c in synthetic.class_table(6, None, synthetic.SHAPES[:8])}
    assert not source_shapes & {c[0] for c in t['classes']}   # target classes differ from the source


def test_target_test_split_stays_whatever_the_train_size(tmp_path):
    a = synthetic.make_target_set(str(tmp_path / 'a'), 3, 4, 5, 40, seed=2)
    b = synthetic.make_target_set(str(tmp_path / 'b'), 3, 8, 5, 40, seed=2, train_subsets=[4])
    for name in ['test_0000', 'test_0004', 'train_0000', 'train_0003']:
        for sub in ('images', 'labels'):
            assert np.array_equal(cv2.imread(os.path.join(a['dataset_root'], sub, name + '.png')),
                                  cv2.imread(os.path.join(b['dataset_root'], sub, name + '.png')))
    assert open(b['train_subsets'][4]).read() == open(a['train_path']).read()


def test_paddleclas_resnet_vd_converts_to_paddleseg_backbone_exactly(tmp_path):
    from paddleseg.models.backbones import ResNet18_vd

    from paddle_pssl.classifiers import build_classifier
    from paddle_pssl.classifiers.convert import save_backbone_from_classifier
    paddle.seed(0)
    classifier = build_classifier('ResNet18_vd', weights='random', num_classes=5)
    weights = str(tmp_path / 'cls.pdparams')
    paddle.save(classifier.model.state_dict(), weights)
    backbone = ResNet18_vd(output_stride=None)
    path = save_backbone_from_classifier(weights, backbone, str(tmp_path / 'bb.pdparams'))
    backbone.set_state_dict(paddle.load(path))
    backbone.eval(), classifier.model.eval()
    x = paddle.randn([2, 3, 64, 64])
    features, _ = classifier.features_and_logits(x)
    np.testing.assert_allclose(backbone(x)[-1].numpy(), features.numpy(), atol=1e-5)
    from paddle_pssl.utils import PSSLError
    with pytest.raises(PSSLError, match='not the same architecture'):
        from paddleseg.models.backbones import ResNet34_vd
        save_backbone_from_classifier(weights, ResNet34_vd(), str(tmp_path / 'x.pdparams'))
