"""PaddleClas classifiers at output stride 8 or 16 (32 is the architectures' own).

A smaller stride keeps the last feature map, and so CAM and Grad-CAM, finer:
ResNet18_vd at 64 px gives a 2x2 map at stride 32 and an 8x8 one at stride 8,
as coarse as ImageNet's 7x7 at 224 px (issue: benchmark realism). The later
stages run unstrided and undilated, so this is for classifiers trained at that
stride (the benchmark trains from scratch); ImageNet weights trained at 32
would see other receptive fields.

Offered where PaddleClas builds the stride from its arguments:
- the ResNet family of ``legendary_models.resnet`` (its ``stride_list``);
- MobileNetV3 small/large (its block table's strides, last first).
"""
import copy
import importlib
import re

STRIDES = (8, 16, 32)
_UNSTRIDED_STAGES = {32: 0, 16: 1, 8: 2}   # stride-2 stages at the end run at stride 1


def _resnet(fn, stride, kwargs):
    keep = 5 - _UNSTRIDED_STAGES[stride]
    return fn(stride_list=[2] * keep + [1] * (5 - keep), **kwargs)


def _mobilenet_v3(module, name, stride, kwargs):
    m = re.fullmatch(r'MobileNetV3_(small|large)_x(\d+)_(\d+)', name)
    if m is None:
        return None
    size, scale = m.group(1), float('%s.%s' % (m.group(2), m.group(3)))
    table = copy.deepcopy(module.NET_CONFIG[size])
    strided = [row for row in table if row[-1] == 2]
    for row in strided[len(strided) - _UNSTRIDED_STAGES[stride]:]:
        row[-1] = 1
    squeeze = module.LAST_SECOND_CONV_SMALL if size == 'small' else module.LAST_SECOND_CONV_LARGE
    return module.MobileNetV3(config=table, scale=scale,
                              stages_pattern=module.MODEL_STAGES_PATTERN['MobileNetV3_' + size],
                              class_squeeze=squeeze, **kwargs)


def build_paddleclas(backbone, name, stride, **kwargs):
    """``backbone.<name>(pretrained=False, **kwargs)`` at output ``stride``."""
    fn = getattr(backbone, name)
    if stride == 32:
        return fn(pretrained=False, **kwargs)
    if stride not in STRIDES:
        raise ValueError('output_stride %r: choose one of %s' % (stride, list(STRIDES)))
    module = importlib.import_module(fn.__module__)
    model = None
    if fn.__module__.endswith('legendary_models.resnet'):
        model = _resnet(fn, stride, kwargs)
    elif fn.__module__.endswith('legendary_models.mobilenet_v3'):
        model = _mobilenet_v3(module, name, stride, kwargs)
    if model is None:
        raise ValueError('output_stride %d is offered for PaddleClas ResNet and MobileNetV3 '
                         'only, not %s (use 32)' % (stride, name))
    return model
