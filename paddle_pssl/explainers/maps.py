"""Map normalisations ([N, H, W] raw -> [N, H, W] float32 in [0, 1]), the
channel reduction of input attributions and the bilinear upsampling every
explainer shares."""
import numpy as np

import paddle
import paddle.nn.functional as F


def _divide_per_map(maps, denom):
    denom = denom.reshape(-1, 1, 1)
    safe = np.where(denom > 0, denom, 1.0)
    # a map with nothing positive becomes all zeros, not NaN
    return np.where(denom > 0, maps / safe, 0.0)


def relu_max(maps):
    """Negative part set to 0, then divided by the map's max (CAM-family, LIME)."""
    maps = np.maximum(maps, 0)
    return _divide_per_map(maps, maps.reshape(len(maps), -1).max(1))


def abs_max(maps):
    """Absolute value divided by its max (keeps negative evidence as saliency)."""
    maps = np.abs(maps)
    return _divide_per_map(maps, maps.reshape(len(maps), -1).max(1))


def minmax(maps):
    """(x - min) / (max - min) per map."""
    flat = maps.reshape(len(maps), -1)
    low = flat.min(1).reshape(-1, 1, 1)
    return _divide_per_map(maps - low, flat.max(1) - flat.min(1))


def percentile_clip(maps, percentile=99.0):
    """Divide by the map's `percentile`-th value and clip at 1 (SmoothGrad paper's
    visualisation: a few extreme gradients must not flatten the rest)."""
    maps = np.maximum(maps, 0)
    flat = maps.reshape(len(maps), -1)
    top = np.percentile(flat, percentile, axis=1)
    top = np.where(top > 0, top, flat.max(1))  # sparse maps: fall back to the max
    return np.clip(_divide_per_map(maps, top), 0.0, 1.0)


NORMALIZERS = {
    "relu_max": relu_max,
    "abs_max": abs_max,
    "minmax": minmax,
    "percentile": percentile_clip,
}


def normalize_maps(maps, method, percentile=99.0):
    """Apply a named normalisation; ``None`` returns the raw maps unchanged."""
    if method is None:
        return maps.astype(np.float32)
    if method not in NORMALIZERS:
        raise ValueError(f"unknown normalize={method!r}; choose one of {sorted(NORMALIZERS)} or None")
    if method == "percentile":
        out = percentile_clip(maps, percentile)
    else:
        out = NORMALIZERS[method](maps)
    return out.astype(np.float32)


def reduce_channels(gradients, how="abs_sum"):
    """[N, C, H, W] input attributions -> [N, H, W]."""
    if how == "abs_sum":  # InterpretDL's own visualisation of SmoothGrad / IntGrad
        return np.abs(gradients).sum(1)
    if how == "abs_max":
        return np.abs(gradients).max(1)
    if how == "square_sum":
        return np.square(gradients).sum(1)
    raise ValueError(f"unknown channel_reduce={how!r}; choose abs_sum, abs_max or square_sum")


def upsample(maps, size):
    """[N, h, w] -> [N, H, W], bilinear, half-pixel centres (cv2/PyTorch convention)."""
    maps = np.asarray(maps, np.float32)
    if tuple(maps.shape[1:]) == tuple(size):
        return maps
    with paddle.no_grad():
        out = F.interpolate(paddle.to_tensor(maps[:, None]), size=list(size), mode="bilinear",
                            align_corners=False)
    return out.numpy()[:, 0]
