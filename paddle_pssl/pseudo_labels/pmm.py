"""PMM pseudo-mask post-processing (Li et al., "Pseudo-mask Matters", ICCV 2021).

Two steps turn the CAMs of the classes present in an image into a label map:

(i) Coefficient-of-Variation smoothing, per class k (CAM v_k in [0, 1]):
        S_k   = {x : v_k(x) > t}                          t = 0.05
        cv_k  = a * std(v_k[S_k]) / mean(v_k[S_k])         a = 0.3, cv_k = 0 if S_k is empty
        v'_k  = (v_k * [v_k >= t]) ** (1 - cv_k)
(ii) Proportional Pseudo-mask Generation (PPMG):
        fg_k  = [CRF_k(x) > 0.5], CRF_k a two-label dense CRF on the unary
                -log([(1 - v'_k) ** 11, v'_k])  (Gaussian sxy 3 compat 10;
                bilateral sxy 80 srgb 13 compat 10; 10 iterations)
        P_k   = v_k / (1 + sum_y v_k(y) fg_k(y))           (raw CAM, not v'_k)
        fg_0  = prod_k (1 - fg_k),  P_0 = fg_0
        label = argmax over {0} + classes of fg_k * P_k    (ties -> background)

The CRF is isolated in :func:`dense_crf_foreground`; everything after it
(:func:`importance_maps`, :func:`proportional_argmax`, ...) takes the
foreground masks as input so the arithmetic is testable without pydensecrf.
"""
from dataclasses import dataclass

import numpy as np

__all__ = [
    'DenseCRFParams', 'coefficient_of_variation', 'cov_smooth', 'crf_unary',
    'dense_crf_foreground', 'importance_maps', 'proportional_argmax',
    'proportional_labels', 'proportional_confidence', 'generate_pseudo_mask',
]

PSSL_BACKGROUND_ID = 1000
_CRF_MISSING = ('PMM pseudo-mask generation needs a dense CRF: '
                'pip install pydensecrf2==1.1 (it builds from source with gcc)')


@dataclass(frozen=True)
class DenseCRFParams:
    """PMM's dense-CRF constants (upstream ``crf_inference`` with scale 1)."""
    background_power: float = 11.0  # unary background score (1 - v') ** 11
    iterations: int = 10
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 10.0
    bilateral_sxy: float = 80.0
    bilateral_srgb: float = 13.0
    bilateral_compat: float = 10.0
    unary_clip: float = 1e-5         # probabilities clipped before -log
    fg_threshold: float = 0.5        # fg_k = [Q_k(fg) > 0.5]


def _check_cams(cams):
    cams = np.asarray(cams)
    if cams.ndim != 3:
        raise ValueError(f'cams must be [K, H, W], got shape {cams.shape}')
    if cams.size and (cams.min() < -1e-6 or cams.max() > 1 + 1e-6):
        raise ValueError('cams must be normalised to [0, 1] '
                         f'(got min {cams.min():.4g}, max {cams.max():.4g})')
    return np.clip(cams.astype(np.float64), 0.0, 1.0)


def coefficient_of_variation(cams, t=0.05, a=0.3, eps=1e-8):
    """cv_k = a * std(v_k[S_k]) / mean(v_k[S_k]), S_k = {v_k > t}; 0 if S_k is empty.

    cams [K, H, W] in [0, 1] -> cv [K] float64. Population std (ddof 0), as upstream.
    """
    v = _check_cams(cams)
    inside = v > t
    count = inside.sum(axis=(1, 2))
    safe_count = np.maximum(count, 1)
    mean = (v * inside).sum(axis=(1, 2)) / safe_count
    var = (((v - mean[:, None, None]) ** 2) * inside).sum(axis=(1, 2)) / safe_count
    cv = a * np.sqrt(var) / (mean + eps)
    return np.where(count > 0, cv, 0.0)


def cov_smooth(cams, t=0.05, a=0.3, cv=None):
    """v'_k = (v_k * [v_k >= t]) ** (1 - cv_k), all classes at once.

    cams [K, H, W] in [0, 1] -> float32 [K, H, W]. ``cv`` overrides the
    per-class coefficients (e.g. computed on another scale of the same CAM).
    Zeros stay zero whatever the exponent.
    """
    v = _check_cams(cams)
    if cv is None:
        cv = coefficient_of_variation(v, t=t, a=a)
    exponent = (1.0 - np.asarray(cv, dtype=np.float64))[:, None, None]
    base = v * (v >= t)
    # where() keeps 0 ** exponent out of the result (it would be 1 or inf for exponent <= 0)
    with np.errstate(divide='ignore', invalid='ignore'):
        out = np.where(base > 0, np.power(base, exponent), 0.0)
    return out.astype(np.float32)


def crf_unary(smoothed_cam, background_power=11.0, clip=1e-5):
    """Two-label unary -log(clip([(1 - v') ** power, v'])) -> float32 [2, H*W].

    Label 0 is background, 1 foreground. The two scores are not renormalised
    (as in PMM's code): the CRF only sees their negative logs.
    """
    v = np.asarray(smoothed_cam, dtype=np.float64)
    scores = np.stack([(1.0 - v) ** background_power, v])
    return np.ascontiguousarray(
        -np.log(np.clip(scores, clip, 1.0)).reshape(2, -1).astype(np.float32))


def _densecrf_module():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as err:
        raise ImportError(_CRF_MISSING) from err
    return dcrf


def dense_crf_foreground(image, smoothed_cam, params=DenseCRFParams()):
    """Foreground marginal Q(fg) [H, W] float32 of PMM's two-label dense CRF.

    image HxWx3 uint8 (RGB or BGR: the bilateral kernel is symmetric in the
    channels), smoothed_cam [H, W] = v'_k in [0, 1].
    """
    dcrf = _densecrf_module()
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = image.shape[:2]
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image must be HxWx3 uint8, got shape {image.shape}')
    if np.shape(smoothed_cam) != (h, w):
        raise ValueError(f'cam shape {np.shape(smoothed_cam)} differs from '
                         f'image shape {(h, w)}')
    crf = dcrf.DenseCRF2D(w, h, 2)
    crf.setUnaryEnergy(crf_unary(smoothed_cam, params.background_power,
                                 params.unary_clip))
    crf.addPairwiseGaussian(sxy=params.gaussian_sxy,
                            compat=params.gaussian_compat)
    crf.addPairwiseBilateral(sxy=params.bilateral_sxy,
                             srgb=params.bilateral_srgb, rgbim=image,
                             compat=params.bilateral_compat)
    q = np.array(crf.inference(params.iterations), dtype=np.float32)
    return q.reshape(2, h, w)[1]


def importance_maps(cams, fg):
    """P_k(x) = v_k(x) / (1 + sum_y v_k(y) fg_k(y)) on the raw CAMs.

    cams [K, H, W] in [0, 1], fg [K, H, W] binary -> float64 [K, H, W].
    The 1 keeps an empty foreground finite; a large object gets a small P_k,
    so a small object is not swallowed by a large overlapping one.
    """
    v = _check_cams(cams)
    fg = np.asarray(fg, dtype=np.float64)
    if fg.shape != v.shape:
        raise ValueError(f'fg shape {fg.shape} differs from cams shape {v.shape}')
    return v / (1.0 + (v * fg).sum(axis=(1, 2)))[:, None, None]


def proportional_argmax(cams, fg):
    """Index map [H, W] int64: 0 = background, k = the k-th class (1-based).

    argmax over {0} + classes of fg_k * P_k, with fg_0 = prod_k (1 - fg_k) and
    P_0 = fg_0. A pixel claimed by some fg_k whose raw CAM is 0 everywhere in
    the claim scores 0 for every entry and falls to background (argmax takes
    the first maximum).
    """
    v = _check_cams(cams)
    fg = (np.asarray(fg) > 0).astype(np.float64)
    if fg.shape != v.shape:
        raise ValueError(f'fg shape {fg.shape} differs from cams shape {v.shape}')
    fg_0 = np.prod(1.0 - fg, axis=0)
    scores = np.concatenate([fg_0[None] * fg_0[None],
                             fg * importance_maps(v, fg)], axis=0)
    return np.argmax(scores, axis=0)


def proportional_labels(cams, fg, class_ids, background_id=PSSL_BACKGROUND_ID):
    """PPMG label map [H, W] int32 from CAMs and binary foreground masks.

    class_ids[k] is the label id of cams[k] (PSSL: ImageNet index 0..999);
    background gets ``background_id`` (PSSL: 1000).
    """
    index = proportional_argmax(cams, fg)
    return _index_to_label(index, class_ids, background_id, len(cams))


def _index_to_label(index, class_ids, background_id, num_cams):
    class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
    if class_ids.shape[0] != num_cams:
        raise ValueError(f'{class_ids.shape[0]} class ids for {num_cams} CAMs')
    lut = np.concatenate([[background_id], class_ids]).astype(np.int32)
    return lut[index]


def proportional_confidence(index, fg_prob):
    """Confidence [H, W] float32 of a PPMG label: the CRF's own belief in it.

    Class k won: Q_k(fg)(x). Background won: prod_k (1 - Q_k(fg)(x)), the
    chance that no class's CRF claims x. PMM defines no confidence; this is
    the project's choice (a pixel weight for the weighted loss).
    """
    fg_prob = np.asarray(fg_prob, dtype=np.float64)
    bg_prob = np.prod(1.0 - fg_prob, axis=0)
    probs = np.concatenate([bg_prob[None], fg_prob], axis=0)
    conf = np.take_along_axis(probs, np.asarray(index)[None], axis=0)[0]
    return conf.astype(np.float32)


def generate_pseudo_mask(image, cams, class_ids,
                         background_id=PSSL_BACKGROUND_ID, t=0.05, a=0.3,
                         smooth=True, crf_params=DenseCRFParams(),
                         return_confidence=False):
    """CoV smoothing + PPMG for one image.

    Args:
        image: HxWx3 uint8 RGB.
        cams: [K, H, W] in [0, 1], one CAM per class present in the image.
        class_ids: K label ids, one per CAM.
        background_id: label of background pixels (PSSL: 1000).
        t, a: CoV smoothing threshold and scale (PMM: 0.05, 0.3).
        smooth: False feeds the raw CAM to the CRF (ablation).
        crf_params: :class:`DenseCRFParams`.
        return_confidence: also return :func:`proportional_confidence`.

    Returns:
        label [H, W] int32, or (label, confidence [H, W] float32).
    """
    image = np.asarray(image)
    cams = _check_cams(cams)
    if cams.shape[1:] != image.shape[:2]:
        raise ValueError(f'cams {cams.shape[1:]} and image {image.shape[:2]} '
                         'must have the same height and width')
    if len(cams) == 0:
        label = np.full(image.shape[:2], background_id, dtype=np.int32)
        return (label, np.ones(image.shape[:2], np.float32)) \
            if return_confidence else label
    smoothed = cov_smooth(cams, t=t, a=a) if smooth else cams.astype(np.float32)
    fg_prob = np.stack([dense_crf_foreground(image, s, crf_params)
                        for s in smoothed])
    fg = fg_prob > crf_params.fg_threshold
    index = proportional_argmax(cams, fg)
    label = _index_to_label(index, class_ids, background_id, len(cams))
    if return_confidence:
        return label, proportional_confidence(index, fg_prob)
    return label
