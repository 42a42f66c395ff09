"""Consensus methods: STAPLE-style EM recovers known reliabilities, the
leave-one-out weights drop an unrelated map, identical maps come back, the
per-image Otsu cut follows the object's area."""
import cv2
import numpy as np
import pytest

from paddle_pssl.config import validate
from paddle_pssl.pseudo_labels import consensus as cons
from paddle_pssl.pseudo_labels import consensus_em
from paddle_pssl.pseudo_labels.generate import consensus_as_cam
from paddle_pssl.utils.errors import PSSLError


def _disc(size=96, radius=24, centre=None):
    mask = np.zeros((size, size), np.uint8)
    cy, cx = centre or (size // 2, size // 2)
    cv2.circle(mask, (cx, cy), radius, 1, -1)
    return mask


def _noisy(truth, sensitivity, specificity, rng):
    draw = rng.random(truth.shape)
    return np.where(truth == 1, draw < sensitivity, draw >= specificity).astype(np.float32)


def test_staple_recovers_known_reliabilities():
    rng = np.random.default_rng(0)
    truth = _disc(128, 40)
    rates = [(0.95, 0.97), (0.9, 0.95), (0.85, 0.99), (0.55, 0.5)]   # the last is near chance
    votes = np.stack([_noisy(truth, p, q, rng) for p, q in rates])
    posterior, p, q, f = consensus_em.staple(votes)
    np.testing.assert_allclose(p, [r[0] for r in rates], atol=0.03)
    np.testing.assert_allclose(q, [r[1] for r in rates], atol=0.03)
    assert f == pytest.approx(truth.mean(), abs=0.01)
    # weight of a member in the posterior's log-odds: log(p q / ((1 - p)(1 - q)))
    weight = np.log(p * q / ((1 - p) * (1 - q)))
    assert weight[3] < 0.2 * weight[:3].min()
    assert ((posterior > 0.5) == truth).mean() > 0.99
    # the mean of the votes is pulled by the unreliable member; the posterior is not
    assert ((posterior > 0.5) == truth).mean() > ((votes.mean(0) > 0.5) == truth).mean()


def test_unreliable_member_cannot_flip_staple():
    rng = np.random.default_rng(1)
    truth = _disc(96, 30)
    good = [_noisy(truth, 0.9, 0.9, rng) for _ in range(3)]
    bad = [_noisy(truth, 0.5, 0.5, rng) for _ in range(4)]   # a majority of coin flips
    votes = np.stack(good + bad)
    posterior = consensus_em.staple(votes)[0]
    # the majority of the 3 good members alone is right at 97.2 % of the pixels
    assert ((posterior > 0.5) == truth).mean() > 0.96
    assert ((posterior > 0.5) == truth).mean() > ((votes.mean(0) > 0.5) == truth).mean() + 0.03


def test_identical_maps_give_that_map_back():
    rng = np.random.default_rng(2)
    blob = cv2.GaussianBlur(_disc(64, 16).astype(np.float32), (0, 0), 4) + 0.05 * rng.random((64, 64))
    saliency = (blob / blob.max()).astype(np.float32)
    maps = [saliency] * 4
    for combine in ('mean', 'loo'):
        consensus, mask, confidence = cons.make_pseudo_label(maps, method='otsu', combine=combine)
        np.testing.assert_allclose(consensus, saliency, atol=1e-6)
        np.testing.assert_array_equal(mask, cons.pseudo_mask(saliency, 'otsu'))
        assert (confidence == 1).all()
    own = cons.pseudo_mask(saliency, 'otsu')
    posterior, mask, confidence = cons.make_pseudo_label(maps, method='posterior', combine='staple')
    np.testing.assert_array_equal(mask, own)
    assert confidence.min() > 0.99
    # soft votes: the posterior's log-odds are linear in the one map, so it keeps its order
    posterior = cons.make_pseudo_label(maps, method='posterior', combine='soft_staple')[0]
    order = np.argsort(saliency.ravel(), kind='stable')
    assert (np.diff(posterior.ravel()[order]) >= -1e-6).all()


@pytest.mark.parametrize('radius', [12, 20, 30])
def test_otsu_cut_follows_object_area(radius):
    truth = _disc(128, radius, centre=(60, 70))
    saliency = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), 2.0)
    mask = cons.pseudo_mask(saliency, 'otsu')
    assert int(mask.sum()) == pytest.approx(int(truth.sum()), rel=0.05)
    # the fixed mean x1.0 cut does not: its area tracks the map's mean, not the object
    if radius == 12:
        assert int(cons.pseudo_mask(saliency, "mean", 1.0).sum()) > 1.3 * int(truth.sum())


def test_posterior_cut_follows_object_area():
    rng = np.random.default_rng(3)
    for radius in (14, 34):
        truth = _disc(128, radius)
        maps = [np.clip(cv2.GaussianBlur(truth.astype(np.float32), (0, 0), 2.0)
                        + 0.15 * rng.standard_normal(truth.shape), 0, 1).astype(np.float32)
                for _ in range(4)]
        _, mask, _ = cons.make_pseudo_label(maps, method='posterior', combine='staple')
        assert int(mask.sum()) == pytest.approx(int(truth.sum()), rel=0.1)


def test_loo_weights_drop_an_unrelated_map():
    rng = np.random.default_rng(4)
    base = cv2.GaussianBlur(_disc(64, 18).astype(np.float32), (0, 0), 3)
    maps = [np.clip(base + 0.1 * rng.standard_normal(base.shape), 0, 1) for _ in range(3)]
    maps.append(rng.random(base.shape).astype(np.float32))          # no relation to the object
    w = consensus_em.loo_weights(np.stack(maps))
    assert w[3] < 0.1 and w[:3].min() > 0.8
    consensus, mask, confidence = cons.make_pseudo_label(maps, method='otsu', combine='loo')
    assert ((mask == (base > base.max() / 2)).mean()) > 0.95
    assert 0 <= confidence.min() and confidence.max() <= 1
    # a flat map carries nothing: weight 0, and all-flat maps fall back to the plain mean
    assert consensus_em.loo_weights(np.stack([base, base, np.full_like(base, 0.3)]))[2] == 0
    flat = [np.full((8, 8), 0.2, np.float32), np.full((8, 8), 0.4, np.float32)]
    np.testing.assert_allclose(cons.make_pseudo_label(flat, combine='loo')[0], 0.3)


def test_em_confidence_is_posterior_of_chosen_label():
    rng = np.random.default_rng(5)
    maps = [rng.random((16, 16)).astype(np.float32) for _ in range(3)]
    for combine in ('staple', 'soft_staple'):
        posterior, mask, confidence = cons.make_pseudo_label(maps, method='posterior', combine=combine)
        np.testing.assert_allclose(confidence, np.maximum(posterior, 1 - posterior))
        np.testing.assert_array_equal(mask, (posterior > 0.5).astype(np.uint8))
        assert posterior.dtype == confidence.dtype == np.float32 and mask.dtype == np.uint8


def test_mean_method_unchanged():
    rng = np.random.default_rng(6)
    maps = [rng.random((20, 24)).astype(np.float32) for _ in range(5)]
    old = cons.consensus_map(maps, [1, 2, 1, 1, 3])
    old_mask = cons.pseudo_mask(old, 'mean', 1.0)
    new = cons.make_pseudo_label(maps, [1, 2, 1, 1, 3], 'none', 'mean', 1.0)
    np.testing.assert_array_equal(new[0], old)
    np.testing.assert_array_equal(new[1], old_mask)
    np.testing.assert_array_equal(new[2], cons.agreement_confidence(maps, old_mask, 'mean', 1.0))


def test_member_rule_and_errors():
    assert cons.member_rule('posterior', 1.0) == ('otsu', 1.0)
    assert cons.member_rule('mean', 1.5) == ('mean', 1.5)
    assert cons.member_rule('posterior', 1.0, 'percentile', 0.3) == ('percentile', 0.3)
    maps = [np.ones((4, 4), np.float32)] * 2
    with pytest.raises(PSSLError, match='weights'):
        cons.make_pseudo_label(maps, [1, 2], combine='staple')
    with pytest.raises(PSSLError, match='unknown consensus.method'):
        cons.make_pseudo_label(maps, combine='vote')
    with pytest.raises(PSSLError, match="consensus.weights .*not soft_staple"):
        validate('generator', {'source': {'image_root': 'x'},
                               'consensus': {'method': 'soft_staple', 'weights': {'cam': 1}}}, 'g.yml')
    cfg = validate('generator', {'source': {'image_root': 'x'},
                                 'consensus': {'method': 'staple', 'threshold': 'posterior'}}, 'g.yml')
    assert cfg['consensus']['member_threshold'] is None


def test_posterior_map_as_pmm_cam():
    truth = _disc(48, 12)
    maps = [cv2.GaussianBlur(truth.astype(np.float32), (0, 0), s) for s in (1.5, 2.5, 3.5)]
    posterior = cons.make_pseudo_label(maps, method='posterior', combine='staple')[0]
    cam = consensus_as_cam(posterior, 'threshold', 'posterior', 1.0)
    assert cam.min() == 0 and cam.max() == pytest.approx(1.0)
    assert ((cam > 0) == (posterior > 0.5)).all()


@pytest.mark.parametrize('method', ['loo', 'staple'])
def test_generator_writes_the_chosen_consensus(method, tmp_path, monkeypatch):
    """The generator's consensus call: fixed maps in place of the explainers."""
    import os
    from conftest import write_photo_source
    from paddle_pssl.pseudo_labels import store
    from paddle_pssl.pseudo_labels.generate import PseudoLabelGenerator
    rng = np.random.default_rng(7)
    source = write_photo_source(tmp_path / 'src', [(3, k, rng.integers(0, 255, (40, 48, 3), np.uint8))
                                                   for k in range(2)])
    truth = _disc(48, 12)[4:44]
    good = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), 2.0)
    maps = {'a/cam': good, 'a/smoothgrad': np.clip(good + 0.05, 0, 1), 'b/lime': rng.random(good.shape)}
    monkeypatch.setattr(PseudoLabelGenerator, 'explain',
                        lambda self, images, class_ids, seeds: [dict(maps) for _ in images])
    cfg = {'source': source, 'classifiers': [{'name': 'efficientnet_lite0'}], 'explainers': ['cam'],
           'consensus': {'method': method, 'threshold': 'posterior' if method == 'staple' else 'otsu'},
           'output': {'pssl_root': str(tmp_path / 'out'), 'batch_size': 2}}
    gen = PseudoLabelGenerator(cfg)
    assert gen.run(progress=False)['written'] == 2
    names = sorted(maps)
    want = cons.make_pseudo_label([maps[n] for n in names], None, 'none', cfg['consensus']['threshold'],
                                  1.0, method)
    for rel in open(os.path.join(gen.root, store.FILE_LIST)).read().split():
        mask, confidence = store.read_label(os.path.join(gen.root, rel))
        np.testing.assert_array_equal(mask, want[1])
        np.testing.assert_allclose(confidence, want[2], atol=1 / 255)
        assert ((mask == truth).mean()) > 0.95
