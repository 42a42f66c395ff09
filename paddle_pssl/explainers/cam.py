"""CAM and GradCAM from one forward of the batch.

CAM (Zhou et al. 2016), exact for a classifier ending in global average
pooling + one linear layer: ``cam_c(i, j) = sum_k W[c, k] * f_k(i, j)`` with
``W = classifier.fc_weight()`` ([num_classes, C], read at call time)
(``+ b_c`` with ``include_bias=True``, so that the map's spatial mean is the
logit). GradCAM (Selvaraju et al. 2017) as InterpretDL 0.8.0 computes it:
channel weights = spatial mean of d score / d features, map =
``ReLU(mean_k weight_k * f_k)``. For a GAP + linear head and ``gradient_of='logit'``
GradCAM is CAM / (C * h * w) after the ReLU, so the normalised maps coincide.

Both maps get their ReLU at feature resolution, then bilinear upsampling to
the input size (ReLU and upsampling do not commute; this is the order of
InterpretDL's GradCAM and of pytorch-grad-cam). CAM's ``relu=False`` keeps the
signed map. Normalisation (default ``'relu_max'``): division by the map's max.
Options: ``'minmax'``, ``'abs_max'``, ``'percentile'``, or ``None`` for the raw
upsampled maps.

Both take ``scales`` and ``flip``, the test-time augmentation of weakly
supervised segmentation code: the input batch is resized by each scale
(bilinear), explained, and its map (ReLU'd at feature resolution) brought back
to the input size; with ``flip`` the mirrored batch is explained too and its
map mirrored back. The map is the mean of all of them, so it is mirror-
symmetric by construction: the map of a mirrored image is the mirrored map.
A coarse feature grid (7x7 at 224 px for stride 32) gives blobs; a larger
scale samples the object on a finer grid.
"""
import numpy as np

import paddle
import paddle.nn.functional as F

from .base import Explainer, upsample


def check_scales(scales):
    """Why ``scales`` is not a usable list of input scales, or None."""
    if not isinstance(scales, (list, tuple)) or not scales:
        return "must be a non-empty list of numbers"
    for s in scales:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.1 <= s <= 4:
            return "must be a list of numbers in [0.1, 4]"
    return None


def resize_batch(images, size):
    """[N, C, H, W] -> [N, C, *size], bilinear, half-pixel centres."""
    if tuple(images.shape[2:]) == tuple(size):
        return images
    with paddle.no_grad():
        out = F.interpolate(paddle.to_tensor(images), size=list(size), mode="bilinear", align_corners=False)
    return out.numpy()


class _AugmentedMaps(Explainer):
    """The mean over ``scales`` x (image, mirrored image) of a feature-resolution
    map (:meth:`feature_maps`), each upsampled to the input size."""

    def __init__(self, classifier, scales=None, flip=False, **kwargs):
        super().__init__(classifier, **kwargs)
        problem = None if scales is None else check_scales(scales)
        if problem:
            raise ValueError(f"scales {scales!r}: {problem}")
        if not isinstance(flip, bool):
            raise ValueError(f"flip {flip!r}: must be true or false")
        self.scales = [1.0] if scales is None else [float(s) for s in scales]
        self.flip = flip

    def feature_maps(self, images, targets, shared):
        """[N, h, w] at feature resolution (``shared``: a FeaturePass of ``images`` or None)."""
        raise NotImplementedError

    def raw(self, images, targets, shared=None, seeds=None):
        size = images.shape[2:]
        n, total = len(images), 0.0
        for scale in self.scales:
            scaled = resize_batch(images, [max(1, round(v * scale)) for v in size])
            plain = shared if scale == 1.0 else None
            if self.flip and plain is not None:   # the clean pass exists: only the mirror is new
                maps = upsample(self.feature_maps(scaled, targets, plain), size)
                mirrored = upsample(self.feature_maps(np.ascontiguousarray(scaled[..., ::-1]), targets, None), size)
                total = total + maps + mirrored[..., ::-1]
            elif self.flip:   # one pass of the batch and its mirror
                both = np.concatenate([scaled, scaled[..., ::-1]])
                maps = upsample(self.feature_maps(both, np.concatenate([targets, targets]), None), size)
                total = total + maps[:n] + maps[n:, :, ::-1]
            else:
                total = total + upsample(self.feature_maps(scaled, targets, plain), size)
        return np.ascontiguousarray(total / (len(self.scales) * (2 if self.flip else 1)), np.float32)


class CAMExplainer(_AugmentedMaps):
    """Class activation maps from the last features and the linear weights."""

    name = "cam"

    def __init__(self, classifier, include_bias=False, relu=True, **kwargs):
        super().__init__(classifier, **kwargs)
        self.include_bias = include_bias
        self.relu = relu

    def feature_maps(self, images, targets, shared):
        shared = shared or self.runner.feature_pass(images)
        feats = shared.features.numpy()  # [N, C, h, w]
        weight = self.classifier.fc_weight()  # [K, C]; raises when there is no exact CAM
        if weight.shape[1] != feats.shape[1]:
            raise ValueError(f"CAM: the fc layer has {weight.shape[1]} input channels but the feature map "
                             f"has {feats.shape[1]}; the feature layer must feed the pooling + fc head")
        cams = np.einsum("nchw,nc->nhw", feats, weight[targets])
        if self.include_bias:
            cams = cams + self.classifier.fc_bias()[targets].reshape(-1, 1, 1)
        if self.relu:
            cams = np.maximum(cams, 0)
        return cams


class GradCAMExplainer(_AugmentedMaps):
    """GradCAM on the classifier's feature layer.

    gradient_of: ``'logit'`` (default: the GradCAM paper's class score, and the
    choice for which GradCAM equals CAM on GAP + linear models) or
    ``'probability'`` (InterpretDL 0.8.0's choice).
    """

    name = "gradcam"

    def __init__(self, classifier, gradient_of="logit", **kwargs):
        super().__init__(classifier, **kwargs)
        if gradient_of not in ("logit", "probability"):
            raise ValueError(f"gradient_of must be 'logit' or 'probability', got {gradient_of!r}")
        self.gradient_of = gradient_of

    def feature_maps(self, images, targets, shared):
        shared = shared or self.runner.feature_pass(images)
        grads = shared.feature_gradients(targets, self.gradient_of)
        return gradcam_from_features(shared.features.numpy(), grads)


def gradcam_from_features(features, gradients):
    """InterpretDL 0.8.0's GradCAM formula on [N, C, h, w] arrays -> [N, h, w]."""
    weights = gradients.mean(axis=(2, 3), keepdims=True)
    return np.maximum((weights * features).mean(1), 0)
