"""HFPL: importance-sampling loss and feature-similarity loss."""
import math

import numpy as np
import paddle
import pytest

from paddle_pssl.losses import hfpl


def _softplus(z):
    return math.log1p(math.exp(z))


def _tensor(a, grad=False, dtype='float64'):
    return paddle.to_tensor(np.asarray(a, dtype=dtype), stop_gradient=not grad)


# ------------------------------------------------------------ class map y
def test_cam_to_class_map_by_hand():
    z = _tensor([[[[-1.0, 2.0, 4.0]], [[3.0, 1.0, 0.0]]]])     # [1, 2, 1, 3]
    label = _tensor([[1, 0]])
    y = hfpl.cam_to_class_map(z, label).numpy()[0, :, 0]
    assert y.shape == (3, 3)
    np.testing.assert_allclose(y[1], [0, 2 / (4 + 1e-5), 4 / (4 + 1e-5)])
    np.testing.assert_allclose(y[2], 0)                          # absent class
    np.testing.assert_allclose(y[0], 1 - y[1])                   # background


# ------------------------------------------------------------ importance sampling
def test_sampling_distribution_by_hand():
    z = _tensor([[[[0.0, 0.0], [math.log(3.0), -50.0]]]])       # sigmoid .5 .5 .75 ~0
    p = hfpl.sampling_distribution(z).numpy()[0, 0]
    raw = np.array([0.5, 0.5, 0.75, 1 / (1 + math.exp(50))]) + 1e-5
    np.testing.assert_allclose(p, raw / raw.sum(), rtol=1e-6)


def test_sampling_frequencies_match_p():
    rng = np.random.default_rng(0)
    z = _tensor(rng.normal(0, 2, size=(2, 3, 3, 4)))
    p = hfpl.sampling_distribution(z).numpy()                   # [2, 3, 12]
    draws = 40000
    index = hfpl.sample_pixel_indices(
        z, draws, generator=np.random.default_rng(1)).numpy()
    for b in range(2):
        for c in range(3):
            freq = np.bincount(index[b, c], minlength=12) / draws
            sd = np.sqrt(p[b, c] * (1 - p[b, c]) / draws)
            assert np.all(np.abs(freq - p[b, c]) < 5 * sd + 1e-12), (b, c)


def test_sampling_is_seedable():
    z = _tensor(np.random.default_rng(0).normal(size=(1, 2, 5, 5)))
    a = hfpl.sample_pixel_indices(z, 10, generator=np.random.default_rng(7))
    b = hfpl.sample_pixel_indices(z, 10, generator=np.random.default_rng(7))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    paddle.seed(3)
    c = hfpl.sample_pixel_indices(z, 10)
    paddle.seed(3)
    d = hfpl.sample_pixel_indices(z, 10)
    np.testing.assert_array_equal(c.numpy(), d.numpy())
    assert a.shape == [1, 2, 10]


def test_is_loss_on_fixed_draw_by_hand():
    z = _tensor([[[[0.5, -1.0, 2.0]], [[1.5, -0.5, 0.0]]]], grad=True)
    label = _tensor([[1, 0]])
    index = paddle.to_tensor([[[0, 2], [1, 1]]], dtype='int64')
    # class 0 present: -log sigmoid(z) = softplus(-z) at 0.5 and 2.0
    # class 1 absent:  -log(1 - sigmoid(z)) = softplus(z) at -0.5 twice
    terms = [_softplus(-0.5), _softplus(-2.0), _softplus(-0.5), _softplus(-0.5)]
    loss = hfpl.sampled_bce_loss(z, label, index)
    assert loss.item() == pytest.approx(sum(terms) / 4, rel=1e-12)
    present = hfpl.sampled_bce_loss(z, label, index, present_only=True)
    assert present.item() == pytest.approx(sum(terms[:2]) / 2, rel=1e-12)
    loss.backward()
    grad = z.grad.numpy()[0, :, 0]
    # only drawn pixels receive gradient; the draw itself is not differentiated
    assert grad[0, 1] == 0 and grad[1, 0] == 0 and grad[1, 2] == 0
    s = 1 / (1 + math.exp(0.5))                         # sigmoid(-0.5)
    assert grad[1, 1] == pytest.approx(2 * s / 4, rel=1e-12)


def test_gap_is_mix_and_layers():
    rng = np.random.default_rng(0)
    z = _tensor(rng.normal(size=(2, 3, 4, 4)), grad=True)
    label = _tensor([[1, 0, 1], [0, 1, 0]])
    zz = z.numpy().mean(axis=(2, 3))
    y = label.numpy()
    gap = np.mean(y * np.log1p(np.exp(-zz)) + (1 - y) * np.log1p(np.exp(zz)))
    assert hfpl.gap_bce_loss(z, label).item() == pytest.approx(gap, rel=1e-10)
    layer_is = hfpl.ImportanceSamplingLoss(seed=5)
    mixed = hfpl.GAPImportanceSamplingLoss(is_weight=0.2, seed=5)(z, label)
    assert mixed.item() == pytest.approx(0.8 * gap + 0.2 * layer_is(z, label).item(),
                                         rel=1e-10)
    mixed.backward()
    assert np.abs(z.grad.numpy()).sum() > 0
    from paddleseg.cvlibs import manager
    for name in ('ImportanceSamplingLoss', 'GAPImportanceSamplingLoss',
                 'FeatureSimilarityLoss'):
        assert manager.LOSSES[name] is getattr(hfpl, name)


# ------------------------------------------------------------ feature similarity
def test_colour_distance_transform_by_hand():
    dx = _tensor([0.0, 0.5, 1.0, 1 / (1 + math.exp(2.5))])
    out = hfpl.transform_colour_distance(dx, mu=2.5).numpy()
    assert out[0] == pytest.approx(math.tanh(2.5 + math.log(1e-5 / (1 + 1e-5))))
    assert out[0] == pytest.approx(-1.0, abs=1e-6)   # same colour: -1
    assert out[1] == pytest.approx(math.tanh(2.5))   # log(1) = 0
    assert out[2] == pytest.approx(1.0, abs=1e-6)    # opposite colours: +1
    assert abs(out[3]) < 1e-3                         # the sign flips near dx = 0.076


def test_fs_two_pixels_by_hand():
    # 1 x 2 image: colours (0.2, 0.4, 0.6) and (0.5, 0.4, 0.0); y (1, 0) and (0.25, 0.75)
    x = _tensor([[[[0.2, 0.5]], [[0.4, 0.4]], [[0.6, 0.0]]]])
    y = _tensor([[[[1.0, 0.25]], [[0.0, 0.75]]]])
    dx = (0.3 + 0.0 + 0.6) / 3                                  # 0.3
    dxt = math.tanh(2.5 + math.log((dx + 1e-5) / (1 - dx + 1e-5)))
    dy = 0.5 * (0.75 ** 2 + 0.75 ** 2)
    w = math.exp(-0.5 / 25) / (2 * math.pi * 25)
    expected = -(2 * w * dy * dxt) / 2      # both ordered pairs, mean over 2 pixels
    for mode in ('full', 'window'):
        loss = hfpl.feature_similarity_loss(x, y, mode=mode)
        assert loss.item() == pytest.approx(expected, rel=1e-10), mode


@pytest.mark.parametrize('mode', ['full', 'window'])
def test_fs_sign_similar_colours_pull_edges_push(mode):
    """Same colour, different y: loss > 0 and descent brings y_i, y_j closer.
    Colour edge (black | white), different y: loss < 0 and descent moves them apart."""
    y0 = np.array([[[[0.9, 0.2]], [[0.1, 0.8]]]])
    for colours, sign in (((0.5, 0.5), +1), ((0.0, 1.0), -1)):
        x = _tensor(np.tile(np.array(colours)[None, None, None], (1, 3, 1, 1)))
        y = _tensor(y0, grad=True)
        loss = hfpl.feature_similarity_loss(x, y, mode=mode)
        assert np.sign(loss.item()) == sign
        loss.backward()
        stepped = y0 - 10.0 * y.grad.numpy()
        gap_before = np.abs(y0[..., 0] - y0[..., 1]).sum()
        gap_after = np.abs(stepped[..., 0] - stepped[..., 1]).sum()
        assert (gap_after - gap_before) * sign < 0


def test_fs_windowed_equals_full_when_window_covers_image():
    rng = np.random.default_rng(0)
    x = _tensor(rng.uniform(-0.1, 1.1, size=(2, 3, 6, 9)))     # clamped inside
    z_np = rng.normal(size=(2, 4, 6, 9))
    label = _tensor([[1, 0, 1, 0], [0, 1, 1, 1]])
    grads, losses = [], []
    for mode, radius in (('full', None), ('window', 8), ('window', 20)):
        z = _tensor(z_np, grad=True)
        loss = hfpl.feature_similarity_loss(
            x, hfpl.cam_to_class_map(z, label), radius=radius, mode=mode)
        loss.backward()
        losses.append(loss.item())
        grads.append(z.grad.numpy())
    assert losses[1] == pytest.approx(losses[0], rel=1e-10)
    assert losses[2] == pytest.approx(losses[0], rel=1e-10)
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-8, atol=1e-14)
    # a smaller window drops far pairs: a different value
    small = hfpl.feature_similarity_loss(
        x, hfpl.cam_to_class_map(_tensor(z_np), label), radius=1)
    assert small.item() != pytest.approx(losses[0], rel=1e-3)


def test_fs_gradient_reaches_cam_logits_float32_layer():
    rng = np.random.default_rng(1)
    image = _tensor(rng.uniform(size=(1, 3, 32, 32)), dtype='float32')
    z = _tensor(rng.normal(size=(1, 3, 16, 16)), grad=True, dtype='float32')
    label = _tensor([[1, 1, 0]], dtype='float32')
    layer = hfpl.FeatureSimilarityLoss()           # image resized to 16 x 16
    loss = layer(image, hfpl.cam_to_class_map(z, label))
    loss.backward()
    grad = z.grad.numpy()
    assert np.isfinite(loss.item()) and np.isfinite(grad).all()
    assert np.abs(grad[0, :2]).sum() > 0           # present classes learn
    assert np.abs(grad[0, 2]).sum() == 0           # absent class is masked out


def test_fs_rejects_bad_mode_and_shapes():
    with pytest.raises(ValueError, match='mode'):
        hfpl.FeatureSimilarityLoss(mode='dense')
    with pytest.raises(ValueError, match='share'):
        hfpl.feature_similarity_loss(paddle.zeros([1, 3, 4, 4]),
                                     paddle.zeros([1, 2, 4, 5]))


def test_fs_window_custom_backward_matches_autograd():
    """Image without gradient -> hand-written backward; with gradient -> autograd.
    Both must give the same loss and y-gradient, for a window smaller than the image."""
    rng = np.random.default_rng(2)
    x_np = rng.uniform(size=(2, 3, 7, 11))
    y_np = rng.uniform(size=(2, 4, 7, 11))
    results = []
    for image_grad in (False, True):
        x = _tensor(x_np, grad=image_grad)
        y = _tensor(y_np, grad=True)
        loss = hfpl.feature_similarity_loss_windowed(x, y, radius=3)
        loss.backward()
        results.append((loss.item(), y.grad.numpy()))
        if image_grad:   # the image gradient agrees with the full form's
            x_full = _tensor(x_np, grad=True)
            hfpl.feature_similarity_loss_full(x_full, _tensor(y_np)).backward()
            x_win = _tensor(x_np, grad=True)
            hfpl.feature_similarity_loss_windowed(x_win, _tensor(y_np),
                                                  radius=10).backward()
            np.testing.assert_allclose(x_win.grad.numpy(), x_full.grad.numpy(),
                                       rtol=1e-8, atol=1e-14)
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-9, atol=1e-15)


def test_fs_default_window_is_three_sigma():
    offsets = hfpl._half_window(100, 100, sigma=5.0, radius=None)
    assert len(offsets) == (31 * 31 - 1) // 2          # radius ceil(3 * 5) = 15
    assert max(di for di, _ in offsets) == 15
    assert len(hfpl._half_window(4, 3, 5.0, None)) == (7 * 5 - 1) // 2  # clipped to the image
