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
    minimum; METHODS.md's plain max-normalisation is used here.
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


def _column_windows(t, r):
    """[N, C, h, w] -> [N, C, h, 2r+1, w]; entry j at column b is t[..., b + j - r], 0 outside.

    A stack of shifted slices: paddle 2.6.2's ``Tensor.unfold`` does not sum
    the gradients of overlapping windows, so it must not be used here.
    """
    w = t.shape[3]
    padded = F.pad(t, [r, r, 0, 0], data_format='NCHW')
    return paddle.stack([padded[:, :, :, j:j + w] for j in range(2 * r + 1)],
                        axis=3)


def _row_coefficients(x, di, r, mu, sigma):
    """A = w_ij dx~_ij for pairs (a, b) -> (a + di, b + dj), |dj| <= r.

    Returns A [N, h', 2r+1, w] (0 where b + dj leaves the image) and the rows
    a0:a1 of the first pixel. x is already clamped to [0, 1].
    """
    n, cx, h, w = x.shape
    a0, a1 = max(0, -di), min(h, h - di)
    xa = x[:, :, a0:a1].unsqueeze(3)
    xb = _column_windows(x[:, :, a0 + di:a1 + di], r)
    dx = ((xa - xb).abs().sum(axis=1) / cx).clip(0.0, 1.0)
    dj = np.arange(-r, r + 1)
    inside = (np.arange(w)[None, :] + dj[:, None] >= 0) & \
             (np.arange(w)[None, :] + dj[:, None] < w)
    scale = gaussian_pixel_weight(di * di + dj * dj, sigma)[:, None] * inside
    scale = paddle.to_tensor(scale.reshape(1, 1, 2 * r + 1, w), dtype=x.dtype,
                             place=x.place)
    return transform_colour_distance(dx, mu) * scale, a0, a1


def _row_differences(y, di, r, a0, a1):
    """y_a - y_b for the same pairs: [N, C, h', 2r+1, w]."""
    return y[:, :, a0:a1].unsqueeze(3) - _column_windows(y[:, :, a0 + di:a1 + di], r)


def _window_radii(h, w, sigma, radius):
    r = int(math.ceil(2 * sigma)) if radius is None else int(radius)
    return min(r, h - 1), min(r, w - 1)


def _windowed_sum(x, y, mu, sigma, rr, rc):
    """sum over ordered pairs in the window of A_ij dy_ij (row di = 0 holds
    both orientations of its pairs, rows di > 0 stand for di < 0 too)."""
    total = None
    for di in range(rr + 1):
        coef, a0, a1 = _row_coefficients(x, di, rc, mu, sigma)
        dy = 0.5 * _row_differences(y, di, rc, a0, a1).square().sum(axis=1)
        term = (coef * dy).sum() * (1.0 if di == 0 else 2.0)
        total = term if total is None else total + term
    return total


class _WindowedFS(PyLayer):
    """L_FS with a hand-written gradient in y, recomputed row by row.

    dL/dy_k = -(2 / (N H W)) sum_{o in window} A_{k,k+o} (y_k - y_{k+o}),
    so backward needs no stored pairs: memory O(C H W (2r+1)) instead of
    autograd's O(C H W (2r+1) (r+1)). Used when the image needs no gradient.
    """

    @staticmethod
    def forward(ctx, x, y, mu, sigma, rr, rc):
        with paddle.no_grad():
            total = _windowed_sum(x, y, mu, sigma, rr, rc)
        ctx.save_for_backward(x, y)
        ctx.params = (mu, sigma, rr, rc)
        n, _, h, w = y.shape
        return -total / (n * h * w)

    @staticmethod
    def backward(ctx, grad_loss):
        x, y = ctx.saved_tensor()
        mu, sigma, rr, rc = ctx.params
        n, _, h, w = y.shape
        with paddle.no_grad():
            grad = paddle.zeros_like(y)
            for di in range(-rr, rr + 1):
                coef, a0, a1 = _row_coefficients(x, di, rc, mu, sigma)
                diff = _row_differences(y, di, rc, a0, a1)
                row = (coef.unsqueeze(1) * diff).sum(axis=3)
                grad = grad + F.pad(row, [0, 0, a0, h - a1], data_format='NCHW')
            grad = grad * (grad_loss * (-2.0 / (n * h * w)))
        return None, grad


def feature_similarity_loss_windowed(x, y, mu=2.5, sigma=5.0, radius=None):
    """L_FS restricted to pairs with |di| <= radius and |dj| <= radius.

    Vectorised over the 2r+1 column offsets of one row offset at a time.
    When x needs no gradient (an image), a custom backward keeps memory at
    O(C H W (2r+1)); otherwise plain autograd, O(C H W (2r+1)(r+1)).
    Equals :func:`feature_similarity_loss_full` when radius >= max(H, W) - 1.
    ``radius`` None -> ceil(2 sigma) (91 % of the Gaussian's mass; upstream's
    own ``fast`` option kept pairs within distance 10 = 2 sigma).
    """
    _check_fs_inputs(x, y)
    n, _, h, w = x.shape
    rr, rc = _window_radii(h, w, sigma, radius)
    x = x.clip(0.0, 1.0)
    if rr < 0 or rc < 0 or (rr == 0 and rc == 0):  # no pairs
        return (y * 0.0).sum()
    if x.stop_gradient:
        return _WindowedFS.apply(x, y, float(mu), float(sigma), rr, rc)
    return -_windowed_sum(x, y, mu, sigma, rr, rc) / (n * h * w)


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
        radius (int, optional): window half-size; None -> ceil(2 sigma).
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
