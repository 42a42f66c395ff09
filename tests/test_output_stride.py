"""Classifiers at output stride 8/16: finer last maps, exact CAM kept, weights round-trip."""
import os

import numpy as np
import paddle
import pytest

import paddle_pssl  # noqa: F401
from paddle_pssl.classifiers import build_classifier


def _map_side(clf, size=64):
    x = paddle.to_tensor(np.random.RandomState(0).standard_normal((1, 3, size, size)).astype('float32'))
    with paddle.no_grad():
        feats, logits = clf.features_and_logits(x)
    return feats.shape[2], feats.shape[3], logits


@pytest.mark.parametrize('name', ['ResNet18_vd', 'MobileNetV3_small_x1_0'])
@pytest.mark.parametrize('stride,side', [(32, 2), (16, 4), (8, 8)])
def test_last_map_follows_the_stride(name, stride, side):
    clf = build_classifier(name, weights='random', num_classes=6, input_size=64, output_stride=stride)
    h, w, logits = _map_side(clf)
    assert (h, w) == (side, side)
    assert logits.shape == [1, 6]
    if name == 'ResNet18_vd':   # GAP + linear head still found: the exact CAM exists
        assert clf.has_exact_cam


def test_weights_round_trip_at_stride_8(tmp_path):
    paddle.seed(3)
    a = build_classifier('ResNet18_vd', weights='random', num_classes=4, output_stride=8)
    path = os.path.join(str(tmp_path), 'm.pdparams')
    paddle.save(a.model.state_dict(), path)
    b = build_classifier('ResNet18_vd', weights=path, num_classes=4, output_stride=8)
    x = np.random.RandomState(1).randint(0, 255, (2, 64, 64, 3)).astype('uint8')
    np.testing.assert_allclose(a.predict_proba(list(x)), b.predict_proba(list(x)), atol=1e-6)


def test_stride_refused_where_not_offered():
    with pytest.raises(ValueError, match='output_stride 8 is offered for PaddleClas ResNet and MobileNetV3'):
        build_classifier('ShuffleNetV2_x0_5', weights='random', num_classes=3, output_stride=8)
    with pytest.raises(ValueError, match='output_stride 4: choose one of'):
        build_classifier('efficientnet_lite0', weights='random', num_classes=3, output_stride=4)


def test_config_checks_the_stride():
    from paddle_pssl.config.schemas import validate
    from paddle_pssl.utils.errors import PSSLError
    with pytest.raises(PSSLError, match='model.output_stride'):
        validate('classifier', {'model': {'name': 'ResNet18_vd', 'output_stride': 4}}, 'c.yml')
    cfg = validate('generator', {'source': {'image_root': 'x'},
                                 'classifiers': [{'name': 'ResNet18_vd', 'output_stride': 8}]}, 'g.yml')
    assert cfg['classifiers'][0]['output_stride'] == 8


@pytest.mark.parametrize('stride', [8, 16])
def test_dilated_resnet_equals_paddleseg_backbone(tmp_path, stride):
    """The classifier at stride 8/16 is PaddleSeg's dilated ResNet18_vd, weight for weight."""
    from paddleseg.models.backbones import ResNet18_vd
    from paddle_pssl.classifiers.convert import save_backbone_from_classifier
    paddle.seed(0)
    classifier = build_classifier('ResNet18_vd', weights='random', num_classes=5, output_stride=stride)
    weights = os.path.join(str(tmp_path), 'cls.pdparams')
    paddle.save(classifier.model.state_dict(), weights)
    backbone = ResNet18_vd(output_stride=stride)
    path = save_backbone_from_classifier(weights, backbone, os.path.join(str(tmp_path), 'bb.pdparams'))
    backbone.set_state_dict(paddle.load(path))
    backbone.eval(), classifier.model.eval()
    x = paddle.randn([2, 3, 64, 64])
    features, _ = classifier.features_and_logits(x)
    assert features.shape[2:] == [64 // stride] * 2
    np.testing.assert_allclose(backbone(x)[-1].numpy(), features.numpy(), atol=1e-5)


def test_generator_gradcam_only_without_cam_and_stride_fingerprint(tmp_path):
    """``gradcam: {only_without_cam: true}``: Grad-CAM explains MobileNetV3 (no exact
    CAM) but not ResNet18_vd (CAM's map); the stride is part of the label settings."""
    from conftest import write_photo_source
    from paddle_pssl.pseudo_labels.generate import PseudoLabelGenerator
    rng = np.random.default_rng(0)
    source = write_photo_source(tmp_path / 'src', [(1, k, rng.integers(0, 255, (48, 48, 3), np.uint8))
                                                   for k in range(2)])
    # classifiers of 2 classes need a source of 2 classes
    (tmp_path / 'src' / 'synsets.txt').write_text('n00000000\nn00000001\n')
    weights = {}
    for name in ('ResNet18_vd', 'MobileNetV3_small_x1_0'):
        clf = build_classifier(name, weights='random', num_classes=2, input_size=64, output_stride=8)
        weights[name] = os.path.join(str(tmp_path), name + '.pdparams')
        paddle.save(clf.model.state_dict(), weights[name])
    cfg = {'source': source,
           'classifiers': [{'name': n, 'weights': w, 'num_classes': 2, 'input_size': 64, 'output_stride': 8}
                           for n, w in weights.items()],
           'explainers': {'cam': {}, 'gradcam': {'only_without_cam': True}},
           'output': {'pssl_root': str(tmp_path / 'out'), 'batch_size': 2}}
    gen = PseudoLabelGenerator(cfg)
    images = [rng.integers(0, 255, (48, 48, 3), np.uint8)]
    maps = gen.explain(images, [1], [0])[0]
    assert sorted(maps) == ['MobileNetV3_small_x1_0/gradcam', 'ResNet18_vd/cam']
    assert gen.dropped == {'MobileNetV3_small_x1_0': ['cam'], 'ResNet18_vd': ['gradcam']}
    assert [c['output_stride'] for c in gen.label_settings()['classifiers']] == [8, 8]
    cfg['explainers'] = {'gradcam': {'only_without_cam': 'yes'}}
    from paddle_pssl.utils.errors import PSSLError
    with pytest.raises(PSSLError, match='explainers.gradcam.only_without_cam'):
        PseudoLabelGenerator(cfg)
