"""HFPL losses for CAM training (Jonnarth, Zhang, Felsberg, WACV 2024).

Each class's CAM is read as an independent sigmoid likelihood per pixel.

Importance sampling (IS), replacing global average pooling (GAP):
    p_c(i) = (sigmoid(z_ci) + 1e-5) / sum_j (sigmoid(z_cj) + 1e-5)
    draw S = 10 pixels per (image, class) from p_c with replacement (no gradient),
    L_IS = mean binary CE of the raw logits z_c at the drawn pixels vs the label.
    Used mixed with the GAP loss: 0.8 L_GAP + 0.2 L_IS.
Feature similarity (FS), colour edges align the CAM with object contours:
    dx_ij  = clamp(||x_i - x_j||_1 / C_x, 0, 1)       x: image in [0, 1], C_x = 3
    dx~_ij = tanh(mu + log((dx + 1e-5) / (1 - dx + 1e-5))),  mu = 2.5
    dy_ij  = 0.5 ||y_i - y_j||^2                       y: :func:`cam_to_class_map`
    w_ij   = exp(-|p_i - p_j|^2 / (2 sigma^2)) / (2 pi sigma^2),  sigma = 5
    L_FS   = -(1 / (N H W)) sum_b sum_i sum_j w_ij dy_ij dx~_ij
Sign: dx~ < 0 for dx < 1 / (1 + e^mu) ~ 0.076 (similar colours), so such a pair
adds +w |dx~| dy >= 0 and descent pulls y_i, y_j together; across a colour
edge dx~ > 0, the pair adds -w dx~ dy <= 0 and descent pushes them apart.

The upstream code (arvijj/hfpl ``tool/probutils.py``) samples every
foreground class, present or not; that is the default here
(``present_only=False``): absent classes then get a sampled negative where the
model wrongly fires. ``present_only=True`` restricts L_IS to present classes.

Logits are [N, C, H, W] over the foreground classes only (no background
channel); labels are multi-hot [N, C].
"""
import math

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.autograd import PyLayer
from paddleseg.cvlibs import manager

__all__ = [
    'max_normalised_cam', 'cam_to_class_map', 'sampling_distribution',
    'sample_pixel_indices', 'sampled_bce_loss', 'importance_sampling_loss',
    'gap_bce_loss', 'mix_gap_is', 'transform_colour_distance',
    'gaussian_pixel_weight', 'feature_similarity_loss_full',
    'feature_similarity_loss_windowed', 'feature_similarity_loss',
    'ImportanceSamplingLoss', 'GAPImportanceSamplingLoss',
    'FeatureSimilarityLoss',
]


# ---------------------------------------------------------------- class map y
def max_normalised_cam(cam_logits, eps=1e-5):
    """relu(z) / (max over pixels of relu(z) + eps), per image and class."""
    cam = F.relu(cam_logits)
    peak = cam.flatten(2).max(axis=2, keepdim=True).unsqueeze(-1)
    return cam / (peak + eps)


def cam_to_class_map(cam_logits, label, eps=1e-5):
    """y for the FS loss: [N, C + 1, H, W], channel 0 = background.

    Foreground channels: max-normalised ReLU CAM times the multi-hot label
    [N, C]; background: 1 - max foreground (1 where no class is present).
    Differentiable in ``cam_logits``. SEAM's ``max_norm`` also subtracts the
    minimum; docs/methods.md section 3's plain max-normalisation is used here.
    """
    label = label.astype(cam_logits.dtype).reshape(label.shape[:2] + [1, 1])
    fg = max_normalised_cam(cam_logits, eps) * label
    bg = 1.0 - fg.max(axis=1, keepdim=True)
    return paddle.concat([bg, fg], axis=1)


# -------------------------------------------------------- importance sampling
def sampling_distribution(logits, eps=1e-5):
    """p_c(i) [N, C, H*W] float64, summing to 1 over i; no gradient."""
    probs = F.sigmoid(logits.detach().astype('float64')) + eps
    probs = probs.flatten(2)
    return probs / probs.sum(axis=2, keepdim=True)


def sample_pixel_indices(logits, num_samples=10, eps=1e-5, generator=None):
    """Draw ``num_samples`` flat pixel indices per (image, class) from p_c.

    Inverse-CDF sampling with replacement: int64 [N, C, S]. ``generator`` is a
    ``numpy.random.Generator`` for a seeded draw independent of paddle's global
    RNG; None uses ``paddle.rand`` (so ``paddle.seed`` governs it).
    """
    probs = sampling_distribution(logits, eps)
    n, c, hw = probs.shape
    cdf = paddle.cumsum(probs, axis=2).reshape([n * c, hw])
    if generator is None:
        uniform = paddle.rand([n * c, num_samples], dtype='float64')
    else:
        uniform = paddle.to_tensor(generator.random((n * c, num_samples)),
                                   dtype='float64', place=logits.place)
    # cdf[-1] is 1 up to rounding: scale by it so every draw lands inside
    index = paddle.searchsorted(cdf, uniform * cdf[:, -1:], right=True)
    return index.clip(max=hw - 1).reshape([n, c, num_samples])


def sampled_bce_loss(logits, label, index, present_only=False):
    """Mean binary CE of z_c at the drawn pixels ``index`` [N, C, S] vs label [N, C]."""
    n, c = logits.shape[:2]
    drawn = paddle.take_along_axis(logits.flatten(2), index, axis=2)
    target = label.astype(logits.dtype).reshape([n, c, 1]).expand_as(drawn)
    bce = F.binary_cross_entropy_with_logits(drawn, target, reduction='none')
    if not present_only:
        return bce.mean()
    mask = target  # 1 on present classes
    return (bce * mask).sum() / (mask.sum() + 1e-12)


def importance_sampling_loss(logits, label, num_samples=10, eps=1e-5,
                             present_only=False, generator=None):
    """L_IS: draw pixels from p_c, then :func:`sampled_bce_loss`."""
    index = sample_pixel_indices(logits, num_samples, eps, generator)
    return sampled_bce_loss(logits, label, index, present_only)


def gap_bce_loss(logits, label):
    """L_GAP: multi-label binary CE of the spatially averaged logits."""
    pooled = logits.mean(axis=[2, 3])
    return F.binary_cross_entropy_with_logits(
        pooled, label.astype(logits.dtype), reduction='mean')


def mix_gap_is(loss_gap, loss_is, is_weight=0.2):
    """(1 - w) L_GAP + w L_IS; HFPL: w = 0.2."""
    return (1.0 - is_weight) * loss_gap + is_weight * loss_is


# --------------------------------------------------------- feature similarity
def transform_colour_distance(dx, mu=2.5, eps=1e-5):
    """dx~ = tanh(mu + log((dx + eps) / (1 - dx + eps))) for dx in [0, 1]."""
    return paddle.tanh(mu + paddle.log((dx + eps) / (1.0 - dx + eps)))


def gaussian_pixel_weight(dist_sq, sigma=5.0):
    """Normalised 2-D Gaussian exp(-d^2 / (2 sigma^2)) / (2 pi sigma^2), as upstream."""
    return np.exp(-0.5 * np.asarray(dist_sq, dtype=np.float64) / sigma ** 2
                  ) / (2.0 * math.pi * sigma ** 2)


def _check_fs_inputs(x, y):
    if x.ndim != 4 or y.ndim != 4:
        raise ValueError(f'x and y must be [N, C, H, W], got {x.shape}, {y.shape}')
    if x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
        raise ValueError(f'x {x.shape} and y {y.shape} must share N, H and W')


def feature_similarity_loss_full(x, y, mu=2.5, sigma=5.0):
    """L_FS over all pixel pairs: memory O((H W)^2) per image, the reference.

    x [N, Cx, H, W] in [0, 1] (clamped), y [N, Cy, H, W].
    """
    _check_fs_inputs(x, y)
    n, cx, h, w = x.shape
    x = x.clip(0.0, 1.0).flatten(2)                     # [N, Cx, HW]
    y = y.flatten(2)                                    # [N, Cy, HW]
    dx = None
    for ch in range(cx):                                # L1, one channel at a time
        term = (x[:, ch, :, None] - x[:, ch, None, :]).abs()
        dx = term if dx is None else dx + term
    dx_t = transform_colour_distance((dx / cx).clip(0.0, 1.0), mu)
    # 0.5 |y_i - y_j|^2 expanded: no [N, Cy, HW, HW] tensor
    sq = (y * y).sum(axis=1)
    gram = paddle.matmul(y, y, transpose_x=True)        # [N, HW, HW]
    dy = (0.5 * (sq.unsqueeze(2) + sq.unsqueeze(1)) - gram).clip(min=0.0)
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
    pos = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.float64)
    dist_sq = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)
    weight = paddle.to_tensor(gaussian_pixel_weight(dist_sq, sigma),
                              dtype=y.dtype, place=y.place)
    return -(weight * dy * dx_t).sum() / (n * h * w)


def _half_window(h, w, sigma, radius):
    """Offsets (di, dj) of one orientation per unordered pair: di > 0, or di = 0 < dj."""
    r = int(math.ceil(3 * sigma)) if radius is None else int(radius)
    rr, rc = min(r, h - 1), min(r, w - 1)
    return [(di, dj) for di in range(rr + 1) for dj in range(-rc, rc + 1)
            if di > 0 or dj > 0]


def _shift(t, di, dj):
    """t[..., a, b] -> t[..., a + di, b + dj] (wrapping; the wrapped pairs get A = 0).

    ``roll`` instead of slicing: on paddle 2.6.2's CPU kernels elementwise ops
    on sliced (strided) tensors ran ~7x slower than on rolled copies.
    """
    return paddle.roll(t, shifts=[-di, -dj], axis=[2, 3])


def _pair_coefficient(x, di, dj, mu, sigma):
    """A_o(k) = w_o dx~(x_k, x_{k+o}), 0 where k + o leaves the image: [N, H, W]."""
    n, cx, h, w = x.shape
    dx = ((x - _shift(x, di, dj)).abs().sum(axis=1) / cx).clip(0.0, 1.0)
    rows = (np.arange(h) + di >= 0) & (np.arange(h) + di < h)
    cols = (np.arange(w) + dj >= 0) & (np.arange(w) + dj < w)
    scale = gaussian_pixel_weight(di * di + dj * dj, sigma) * \
        (rows[:, None] & cols[None, :])
    scale = paddle.to_tensor(scale[None], dtype=x.dtype, place=x.place)
    return transform_colour_distance(dx, mu) * scale.expand_as(dx)


def _windowed_sum(x, y, offsets, mu, sigma):
    """sum over the unordered window pairs of A_ij dy_ij (half the ordered sum)."""
    total = None
    for di, dj in offsets:
        dy = 0.5 * (y - _shift(y, di, dj)).square().sum(axis=1)
        term = (_pair_coefficient(x, di, dj, mu, sigma) * dy).sum()
        total = term if total is None else total + term
    return total


class _WindowedFS(PyLayer):
    """L_FS with a hand-written gradient in y, recomputed offset by offset.

    With D_o(k) = A_o(k) (y_k - y_{k+o}) over the half window,
    dL/dy_k = -(2 / (N H W)) sum_o [D_o(k) - D_o(k - o)], so backward stores
    no pairs: memory O(C H W) instead of autograd's O(C H W (2r+1)^2 / 2).
    Used when the image needs no gradient.
    """

    @staticmethod
    def forward(ctx, x, y, mu, sigma, offsets):
        with paddle.no_grad():
            total = _windowed_sum(x, y, offsets, mu, sigma)
        ctx.save_for_backward(x, y)
        ctx.params = (mu, sigma, offsets)
        n, _, h, w = y.shape
        return -2.0 * total / (n * h * w)

    @staticmethod
    def backward(ctx, grad_loss):
        x, y = ctx.saved_tensor()
        mu, sigma, offsets = ctx.params
        n, _, h, w = y.shape
        with paddle.no_grad():
            grad = paddle.zeros_like(y)
            for di, dj in offsets:
                diff = y - _shift(y, di, dj)
                # explicit expand: a broadcasting multiply was ~15x slower here
                coef = _pair_coefficient(x, di, dj, mu, sigma).unsqueeze(1)
                pair = coef.expand_as(diff) * diff
                grad = grad + pair - _shift(pair, -di, -dj)
            grad = grad * (grad_loss * (-2.0 / (n * h * w)))
        return None, grad


def feature_similarity_loss_windowed(x, y, mu=2.5, sigma=5.0, radius=None):
    """L_FS restricted to pairs with |di| <= radius and |dj| <= radius.

    Loops over half the (2r+1)^2 offsets (the sum is symmetric in i, j).
    When x needs no gradient (an image), a hand-written backward keeps memory
    at O(C H W); otherwise plain autograd, O(C H W (2r+1)^2 / 2).
    Equals :func:`feature_similarity_loss_full` when radius >= max(H, W) - 1.
    ``radius`` None -> ceil(3 sigma): within 2.5 % of the full value in
    benchmarks/bench_fs_loss.py, where 2 sigma (upstream's unused ``fast``
    option kept distance <= 10) was off by 7-21 %. With the image's gradient
    not needed, memory does not grow with the radius; time does.
    """
    _check_fs_inputs(x, y)
    n, _, h, w = x.shape
    offsets = _half_window(h, w, sigma, radius)
    x = x.clip(0.0, 1.0)
    if not offsets:  # a 1x1 image or radius 0: no pairs
        return (y * 0.0).sum()
    if x.stop_gradient:
        return _WindowedFS.apply(x, y, float(mu), float(sigma), offsets)
    return -2.0 * _windowed_sum(x, y, offsets, mu, sigma) / (n * h * w)


def feature_similarity_loss(x, y, mu=2.5, sigma=5.0, radius=None,
                            mode='window'):
    """L_FS, ``mode`` 'window' (practical) or 'full' (reference, small inputs)."""
    if mode == 'full':
        return feature_similarity_loss_full(x, y, mu, sigma)
    if mode == 'window':
        return feature_similarity_loss_windowed(x, y, mu, sigma, radius)
    raise ValueError(f"mode must be 'window' or 'full', got {mode!r}")


# ------------------------------------------------------------- registered layers
@manager.LOSSES.add_component
class ImportanceSamplingLoss(nn.Layer):
    """L_IS on CAM logits [N, C, H, W] and multi-hot labels [N, C].

    Args:
        num_samples (int): pixels drawn per image and class (HFPL: 10).
        eps (float): added to sigmoid(z) before normalising (HFPL: 1e-5).
        present_only (bool): loss only on the classes present in the image.
        seed (int, optional): own NumPy RNG for the draws; None follows paddle.seed.
    """

    def __init__(self, num_samples=10, eps=1e-5, present_only=False,
                 seed=None):
        super().__init__()
        self.num_samples = int(num_samples)
        self.eps = eps
        self.present_only = present_only
        self.generator = None if seed is None else np.random.default_rng(seed)

    def forward(self, logits, label):
        return importance_sampling_loss(logits, label, self.num_samples,
                                        self.eps, self.present_only,
                                        self.generator)


@manager.LOSSES.add_component
class GAPImportanceSamplingLoss(ImportanceSamplingLoss):
    """HFPL's classification loss: (1 - is_weight) L_GAP + is_weight L_IS (0.2)."""

    def __init__(self, is_weight=0.2, num_samples=10, eps=1e-5,
                 present_only=False, seed=None):
        super().__init__(num_samples, eps, present_only, seed)
        self.is_weight = float(is_weight)

    def forward(self, logits, label):
        loss_is = super().forward(logits, label) if self.is_weight else 0.0
        return mix_gap_is(gap_bce_loss(logits, label), loss_is, self.is_weight)


@manager.LOSSES.add_component
class FeatureSimilarityLoss(nn.Layer):
    """L_FS between an image in [0, 1] and a class map y (see :func:`cam_to_class_map`).

    ``forward(image, y)``: image [N, 3, H', W'] is resized bilinearly
    (align_corners, as upstream) to y's [H, W] when they differ.

    Args:
        mu (float): dx~ shift (HFPL: 2.5).
        sigma (float): Gaussian pixel-distance scale (HFPL: 5).
        radius (int, optional): window half-size; None -> ceil(3 sigma) = 15.
        mode (str): 'window' or 'full'.
    """

    def __init__(self, mu=2.5, sigma=5.0, radius=None, mode='window'):
        super().__init__()
        if mode not in ('window', 'full'):
            raise ValueError(f"mode must be 'window' or 'full', got {mode!r}")
        self.mu, self.sigma, self.radius, self.mode = mu, sigma, radius, mode

    def forward(self, image, y):
        if image.shape[2:] != y.shape[2:]:
            image = F.interpolate(image, size=y.shape[2:], mode='bilinear',
                                  align_corners=True)
        return feature_similarity_loss(image, y, self.mu, self.sigma,
                                       self.radius, self.mode)
