"""PMM: CoV smoothing, proportional pseudo-masks (PPMG) and the PUF loss."""
import importlib.util
import math
import sys

import numpy as np
import paddle
import pytest

from paddle_pssl.losses.puf import PUFCrossEntropyLoss, pretend_under_fitting
from paddle_pssl.losses.weighted_ce import (PSSLCrossEntropyLoss,
                                            pixel_cross_entropy)
from paddle_pssl.pseudo_labels import pmm

HAS_CRF = importlib.util.find_spec('pydensecrf') is not None

# 3x3 CAM for the hand computation below
CAM_3X3 = np.array([[0.00, 0.04, 0.10],
                    [0.20, 0.30, 0.40],
                    [0.05, 0.50, 1.00]])


# ------------------------------------------------------------ CoV smoothing
def test_cov_by_hand():
    # S = {v > 0.05} = {0.1, 0.2, 0.3, 0.4, 0.5, 1.0} (0.05 itself is out)
    # mean = 2.5 / 6 = 0.416667
    # squared deviations: 0.100278 0.046944 0.013611 0.000278 0.006944 0.340278
    # var = 0.508333 / 6 = 0.0847222, std = 0.291071
    # cv = 0.3 * 0.291071 / 0.416667 = 0.209571
    cv = pmm.coefficient_of_variation(CAM_3X3[None], t=0.05, a=0.3)
    assert cv.shape == (1,)
    assert cv[0] == pytest.approx(0.209571, abs=1e-6)


def test_cov_smoothing_exponent_by_hand():
    smoothed = pmm.cov_smooth(CAM_3X3[None])[0]
    exponent = 1 - 0.2095710
    # below t -> 0; t itself is kept (>= t) and raised, as is every other value
    assert smoothed[0, 0] == 0 and smoothed[0, 1] == 0
    assert smoothed[2, 0] == pytest.approx(0.05 ** exponent, rel=1e-5)  # 0.093676
    assert smoothed[0, 2] == pytest.approx(0.10 ** exponent, rel=1e-5)  # 0.162021
    assert smoothed[2, 2] == pytest.approx(1.0)
    assert smoothed.dtype == np.float32


def test_cov_empty_support_and_vectorised_over_classes():
    flat = np.full((3, 3), 0.05)        # nothing strictly above t: cv = 0
    stack = np.stack([CAM_3X3, flat, np.zeros((3, 3))])
    cv = pmm.coefficient_of_variation(stack)
    assert cv[1] == 0 and cv[2] == 0
    assert cv[0] == pytest.approx(pmm.coefficient_of_variation(CAM_3X3[None])[0])
    smoothed = pmm.cov_smooth(stack)
    np.testing.assert_allclose(smoothed[0], pmm.cov_smooth(CAM_3X3[None])[0])
    np.testing.assert_allclose(smoothed[1], flat)   # exponent 1: unchanged
    assert not smoothed[2].any()


def test_cams_outside_unit_range_rejected():
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        pmm.cov_smooth(CAM_3X3[None] * 2)


def test_crf_unary_by_hand():
    unary = pmm.crf_unary(np.array([[0.0, 0.5, 1.0]]))
    assert unary.shape == (2, 3)
    np.testing.assert_allclose(unary[0], [0.0, -math.log(0.5 ** 11),
                                          -math.log(1e-5)], rtol=1e-6)
    np.testing.assert_allclose(unary[1], [-math.log(1e-5), -math.log(0.5), 0.0],
                               rtol=1e-6)


# ------------------------------------------------------------ PPMG arithmetic
def test_importance_by_hand():
    v = np.array([[[0.2, 0.6, 0.8]]])
    fg = np.array([[[0, 1, 1]]])
    # denominator 1 + 0.6 + 0.8 = 2.4
    np.testing.assert_allclose(pmm.importance_maps(v, fg)[0, 0],
                               [0.2 / 2.4, 0.6 / 2.4, 0.8 / 2.4])


def test_background_rule_and_argmax_by_hand():
    # 1 x 4 image, two classes
    v1 = [0.9, 0.9, 0.1, 0.0]
    f1 = [1, 1, 0, 0]               # P1 = v1 / (1 + 1.8)
    v2 = [0.0, 0.5, 0.7, 0.0]
    f2 = [0, 1, 1, 0]               # P2 = v2 / (1 + 1.2)
    cams = np.array([[v1], [v2]])
    fg = np.array([[f1], [f2]])
    # fg_0 = (1 - f1)(1 - f2) = [0, 0, 0, 1]
    # scores x0: [0, .9/2.8, 0]           -> class 1
    #        x1: [0, .9/2.8=.321, .5/2.2=.227] -> class 1
    #        x2: [0, 0 (f1 = 0), .7/2.2]   -> class 2
    #        x3: [1, 0, 0]                 -> background
    index = pmm.proportional_argmax(cams, fg)
    np.testing.assert_array_equal(index, [[1, 1, 2, 0]])
    label = pmm.proportional_labels(cams, fg, class_ids=[7, 42])
    np.testing.assert_array_equal(label, [[7, 7, 42, 1000]])
    assert label.dtype == np.int32
    label = pmm.proportional_labels(cams, fg, [7, 42], background_id=0)
    np.testing.assert_array_equal(label, [[7, 7, 42, 0]])


def test_small_object_beats_large_one_where_they_overlap():
    # A: 10 fg pixels at 0.9 -> P_A = 0.9 / 10 = 0.09
    # B:  2 fg pixels at 0.5 -> P_B = 0.5 / 2  = 0.25: wins the overlap
    cam_a = np.full((1, 10), 0.9)
    cam_b = np.zeros((1, 10))
    cam_b[0, :2] = 0.5
    cams = np.stack([cam_a, cam_b])
    fg = cams > 0
    np.testing.assert_array_equal(pmm.proportional_argmax(cams, fg),
                                  [[2, 2] + [1] * 8])


def test_claimed_pixel_with_zero_cam_falls_to_background():
    cams = np.array([[[0.0, 0.5]]])
    fg = np.array([[[1, 1]]])
    np.testing.assert_array_equal(pmm.proportional_argmax(cams, fg), [[0, 1]])


def test_confidence_by_hand():
    index = np.array([[0, 1, 2]])
    fg_prob = np.array([[[0.2, 0.9, 0.6]], [[0.5, 0.3, 0.7]]])
    # background: (1 - 0.2)(1 - 0.5) = 0.4; class 1: 0.9; class 2: 0.7
    np.testing.assert_allclose(pmm.proportional_confidence(index, fg_prob),
                               [[0.4, 0.9, 0.7]], rtol=1e-6)


def test_missing_pydensecrf_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, 'pydensecrf.densecrf', None)
    with pytest.raises(ImportError, match=r'pip install pydensecrf2==1\.1'):
        pmm.dense_crf_foreground(np.zeros((4, 4, 3), np.uint8),
                                 np.zeros((4, 4)))


# ------------------------------------------------------------ PPMG with CRF
def _two_object_scene():
    """48x48: a red square and a green one on grey; CAMs are blurry blobs."""
    h = w = 48
    image = np.full((h, w, 3), 90, np.uint8)
    truth = np.full((h, w), 1000)
    image[6:22, 6:22] = (220, 30, 30)
    truth[6:22, 6:22] = 3
    image[28:44, 26:44] = (30, 200, 40)
    truth[28:44, 26:44] = 5
    rows, cols = np.mgrid[0:h, 0:w]

    def blob(ci, cj, s):
        return np.exp(-((rows - ci) ** 2 + (cols - cj) ** 2) / (2 * s ** 2))
    cams = np.stack([blob(15, 15, 7), blob(35, 34, 7)])   # centres a bit off
    return image, cams, truth


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.mark.skipif(not HAS_CRF, reason='pydensecrf2 is not installed '
                    '(pip install pydensecrf2==1.1, builds with gcc)')
def test_ppmg_end_to_end_with_crf():
    image, cams, truth = _two_object_scene()
    label, conf = pmm.generate_pseudo_mask(image, cams, [3, 5],
                                           return_confidence=True)
    assert label.shape == truth.shape and conf.shape == truth.shape
    assert set(np.unique(label)) <= {3, 5, 1000}
    for cid, cam in zip([3, 5], cams):
        crf_iou = _iou(label == cid, truth == cid)
        cam_iou = _iou(cam > 0.5, truth == cid)
        assert crf_iou > 0.85, (cid, crf_iou)
        assert crf_iou > cam_iou     # the CRF snaps the blob to the colour edges
    assert 0.0 <= conf.min() and conf.max() <= 1.0
    # the same inputs give the same labels
    np.testing.assert_array_equal(label, pmm.generate_pseudo_mask(image, cams, [3, 5]))


@pytest.mark.skipif(not HAS_CRF, reason='pydensecrf2 is not installed '
                    '(pip install pydensecrf2==1.1, builds with gcc)')
def test_ppmg_no_classes_is_all_background():
    image, _, _ = _two_object_scene()
    label = pmm.generate_pseudo_mask(image, np.zeros((0, 48, 48)), [])
    assert (label == 1000).all()


# ------------------------------------------------------------ PUF loss
def _logits_for(probabilities_of_true_class, num_classes=3):
    """Logits [1, C, 1, P] whose CE at label 0 is -log(p) per pixel."""
    p = np.asarray(probabilities_of_true_class, dtype=np.float64)
    rest = (1 - p) / (num_classes - 1)
    probs = np.stack([p] + [rest] * (num_classes - 1))     # [C, P]
    logit = paddle.to_tensor(np.log(probs)[None, :, None, :].astype('float32'),
                             stop_gradient=False)
    return logit, paddle.zeros([1, 1, p.size], dtype='int64')


def test_puf_clamp_only_below_beta():
    # losses: three well-fitted pixels (~0.01) and one noisy pixel (~2.3)
    logit, label = _logits_for([0.99, 0.99, 0.99, 0.1])
    ce = -np.log([0.99, 0.99, 0.99, 0.1])
    # mean = 0.583 >= beta 0.5 -> plain CE
    loss = PUFCrossEntropyLoss(beta=0.5, k=0.5)(logit, label)
    assert loss.item() == pytest.approx(ce.mean(), rel=1e-5)
    # beta 0.6 > mean -> min(l, 0.5) per pixel
    loss = PUFCrossEntropyLoss(beta=0.6, k=0.5)(logit, label)
    assert loss.item() == pytest.approx(np.minimum(ce, 0.5).mean(), rel=1e-5)


def test_puf_clamped_pixels_give_no_gradient():
    logit, label = _logits_for([0.99, 0.99, 0.99, 0.1])
    PUFCrossEntropyLoss(beta=0.6, k=0.5)(logit, label).backward()
    grad = logit.grad.numpy()[0, :, 0, :]
    assert np.abs(grad[:, 3]).max() == 0            # clamped: treated as noise
    assert np.abs(grad[:, :3]).min() > 0            # the others still learn


def test_puf_no_switch_keeps_gradient():
    logit, label = _logits_for([0.99, 0.99, 0.99, 0.1])
    PUFCrossEntropyLoss(beta=0.5, k=0.5)(logit, label).backward()
    assert np.abs(logit.grad.numpy()[0, :, 0, 3]).min() > 0


@pytest.mark.parametrize('puf_type, transform', [
    ('clamp', lambda l: np.minimum(l, 0.5)),
    ('pow', lambda l: (l + 1e-9) ** 0.5),
    ('ignore', lambda l: l * (l <= 0.5)),
])
def test_puf_variants_by_hand(puf_type, transform):
    logit, label = _logits_for([0.99, 0.9, 0.7, 0.1])
    ce = -np.log([0.99, 0.9, 0.7, 0.1])              # mean 0.698
    loss = PUFCrossEntropyLoss(puf_type, beta=1.0, k=0.5)(logit, label)
    assert loss.item() == pytest.approx(transform(ce).mean(), rel=1e-5)
    off = PUFCrossEntropyLoss(puf_type, beta=0.6, k=0.5)(logit, label)
    assert off.item() == pytest.approx(ce.mean(), rel=1e-5)


def test_puf_ignore_variant_zeroes_gradient_above_k():
    logit, label = _logits_for([0.99, 0.9, 0.7, 0.1])
    PUFCrossEntropyLoss('ignore', beta=1.0, k=0.5)(logit, label).backward()
    grad = np.abs(logit.grad.numpy()[0, :, 0, :])
    assert grad[:, 3].max() == 0 and grad[:, :3].min() > 0


def test_puf_trigger_uses_valid_pixel_mean():
    # valid losses ~0.01 and 2.3 (mean 1.16); 6 ignored pixels would pull an
    # all-pixel mean to 0.29 < beta; the valid-pixel mean must not switch on
    logit, _ = _logits_for([0.99, 0.1] + [0.5] * 6)
    label = paddle.to_tensor([[[0, 0] + [255] * 6]], dtype='int64')
    ce = -np.log([0.99, 0.1])
    loss = PUFCrossEntropyLoss(beta=0.5, k=0.5, ignore_index=255)(logit, label)
    assert loss.item() == pytest.approx(ce.mean(), rel=1e-5)


def test_puf_composes_with_class_and_pixel_weights():
    logit, label = _logits_for([0.99, 0.99, 0.99, 0.1])
    label = paddle.to_tensor([[[0, 2, 2, 0]]], dtype='int64')
    ce, _ = pixel_cross_entropy(logit, label, 255)
    ce = ce.numpy().ravel()
    pixel_weight = paddle.to_tensor([[[1.0, 0.5, 2.0, 1.0]]])
    class_w = np.array([1.0, 1.0, 0.1])[[0, 2, 2, 0]]
    w = class_w * np.array([1.0, 0.5, 2.0, 1.0])
    loss = PUFCrossEntropyLoss(beta=10.0, k=0.5, background_weight=0.1,
                               background_index=2)(logit, label, pixel_weight)
    expected = (w * np.minimum(ce, 0.5)).sum() / w.sum()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # with PUF off it is the project's weighted CE
    off = PUFCrossEntropyLoss(beta=0.0, background_weight=0.1,
                              background_index=2)(logit, label, pixel_weight)
    ref = PSSLCrossEntropyLoss(background_weight=0.1,
                               background_index=2)(logit, label, pixel_weight)
    assert off.item() == pytest.approx(ref.item(), rel=1e-6)


def test_puf_rejects_unknown_type_and_is_registered():
    from paddleseg.cvlibs import manager
    with pytest.raises(ValueError, match='puf_type'):
        PUFCrossEntropyLoss('median')
    with pytest.raises(ValueError, match='puf_type'):
        pretend_under_fitting(paddle.ones([1, 1, 1]), paddle.ones([1, 1, 1]) > 0,
                              'median')
    assert manager.LOSSES['PUFCrossEntropyLoss'] is PUFCrossEntropyLoss
