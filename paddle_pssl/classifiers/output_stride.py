"""PaddleClas classifiers at output stride 8 or 16 (32 is the architectures' own).

A smaller stride keeps the last feature map, and so CAM and Grad-CAM, finer:
ResNet18_vd at 64 px gives a 2x2 map at stride 32 and an 8x8 one at stride 8,
as coarse as ImageNet's 7x7 at 224 px. As in PaddleSeg's backbones (DeepLab's
atrous convolution), the stages that stop striding run their k x k
convolutions dilated (rate 2, then 4), so every filter sees the same image
spacing as at stride 32: weights move between strides unchanged, e.g. a
classifier trained at 8 into PaddleSeg's ResNet_vd at output stride 16 or 8
(tests/test_output_stride.py checks the stride-8 ResNet18_vd against
PaddleSeg's to 1e-5).

Offered where PaddleClas sets the strides from its arguments:
- the ResNet family of ``legendary_models.resnet`` (its ``stride_list``);
- MobileNetV3 small/large (its block table's strides, last first).
PaddleClas builds no dilated convolutions, so those convolutions are rebuilt
dilated around their own weights (:func:`_dilated`).

And for this project's EfficientNet-Lite (:func:`dilate_efficientnet_lite`),
as PaddleSeg's ``MobileNetV3_*_os8`` tables do it: the block that stops
striding keeps the rate before it and the blocks after it double it. With
input sides divisible by 32, the features at stride 8 taken every 4th pixel
from the 4th (``[..., 3::4, 3::4]``; at 16: ``[..., 1::2, 1::2]``) are the
stride-32 network's own, to float precision.
"""
import copy
import importlib
import re

import paddle.nn as nn

STRIDES = (8, 16, 32)
_UNSTRIDED = {32: 0, 16: 1, 8: 2}   # stride-2 steps at the end that run at stride 1


def _dilated(conv, rate, stride=None):
    """``conv`` as a Conv2D with dilation ``rate`` and 'same' padding, holding
    the same weight (and bias) parameters; ``stride`` replaces its stride."""
    k = conv._kernel_size[0]
    new = nn.Conv2D(conv._in_channels, conv._out_channels, conv._kernel_size,
                    stride=conv._stride if stride is None else stride, padding=rate * (k - 1) // 2, dilation=rate,
                    groups=conv._groups, bias_attr=False if conv.bias is None else None,
                    data_format=conv._data_format)
    new.weight = conv.weight
    if conv.bias is not None:
        new.bias = conv.bias
    return new


def _dilate_block(block, rate):
    """Dilate every k x k (k > 1) convolution of ``block``; a shortcut that
    would average-pool at stride 1 (ResNet-vd) is a plain 1x1 convolution,
    as in PaddleSeg's ResNet_vd."""
    for _, layer in block.named_sublayers(include_self=True):
        conv = getattr(layer, 'conv', None)
        if isinstance(conv, nn.Conv2D) and conv._kernel_size[0] > 1:
            layer.conv = _dilated(conv, rate)
    short = getattr(block, 'short', None)
    if short is not None and getattr(short, 'is_vd_mode', False):
        short.is_vd_mode = False


def _resnet(fn, stride, kwargs):
    unstrided = _UNSTRIDED[stride]
    model = fn(stride_list=[2] * (5 - unstrided) + [1] * unstrided, **kwargs)
    first = 4 - unstrided            # stage index (0..3) of the first unstrided stage
    start = sum(model.block_depth[:first])
    rate = 1
    for stage in range(first, 4):
        rate *= 2
        for block in list(model.blocks)[start:start + model.block_depth[stage]]:
            _dilate_block(block, rate)
        start += model.block_depth[stage]
    return model


def _mobilenet_v3(module, name, stride, kwargs):
    m = re.fullmatch(r'MobileNetV3_(small|large)_x(\d+)_(\d+)', name)
    if m is None:
        return None
    size, scale = m.group(1), float('%s.%s' % (m.group(2), m.group(3)))
    table = copy.deepcopy(module.NET_CONFIG[size])
    strided = [i for i, row in enumerate(table) if row[-1] == 2]
    unstrided = strided[len(strided) - _UNSTRIDED[stride]:]
    for i in unstrided:
        table[i][-1] = 1
    squeeze = module.LAST_SECOND_CONV_SMALL if size == 'small' else module.LAST_SECOND_CONV_LARGE
    model = module.MobileNetV3(config=table, scale=scale,
                               stages_pattern=module.MODEL_STAGES_PATTERN['MobileNetV3_' + size],
                               class_squeeze=squeeze, **kwargs)
    rate = 1
    for i, block in enumerate(model.blocks):
        if i in unstrided:
            rate *= 2
        if rate > 1:
            _dilate_block(block, rate)
    return model


def _check_stride(stride):
    if stride not in STRIDES:
        raise ValueError('output_stride %r: choose one of %s' % (stride, list(STRIDES)))


def dilate_efficientnet_lite(model, stride):
    """:class:`~.efficientnet_lite.EfficientNetLite` ``model`` at output
    ``stride``, in place (weights kept); see the module docstring."""
    _check_stride(stride)
    strided = [i for i, block in enumerate(model._blocks) if block._depthwise_conv._stride[0] == 2]
    unstrided = strided[len(strided) - _UNSTRIDED[stride]:]
    rate = 1
    for i, block in enumerate(model._blocks):
        if i in unstrided:
            block._depthwise_conv = _dilated(block._depthwise_conv, rate, stride=1)
            rate *= 2
        elif rate > 1:
            block._depthwise_conv = _dilated(block._depthwise_conv, rate)
    return model


def build_paddleclas(backbone, name, stride, **kwargs):
    """``backbone.<name>(pretrained=False, **kwargs)`` at output ``stride``."""
    fn = getattr(backbone, name)
    if stride == 32:
        return fn(pretrained=False, **kwargs)
    _check_stride(stride)
    model = None
    if fn.__module__.endswith('legendary_models.resnet'):
        model = _resnet(fn, stride, kwargs)
    elif fn.__module__.endswith('legendary_models.mobilenet_v3'):
        model = _mobilenet_v3(importlib.import_module(fn.__module__), name, stride, kwargs)
    if model is None:
        raise ValueError('output_stride %d is offered for PaddleClas ResNet and MobileNetV3 '
                         'only, not %s (use 32)' % (stride, name))
    return model
