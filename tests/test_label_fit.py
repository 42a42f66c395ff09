"""Options that make labels follow the object (issue 26): multi-scale and
mirrored CAMs, a cut raised towards the peak, a cut per classifier with a
quorum; and the real masked photos they are measured on."""
import os

import cv2
import numpy as np
import pytest

from paddle_pssl.config import validate
from paddle_pssl.pseudo_labels import consensus as cons
from paddle_pssl.utils.errors import PSSLError
from test_explainers import TARGETS, images, resnet, tiny  # noqa: F401  (fixtures)


# ------------------------------------------------------------ explainers
@pytest.mark.parametrize('name', ['cam', 'gradcam'])
def test_mirrored_map_of_a_mirrored_image_is_the_mirrored_map(name, resnet, images):  # noqa: F811
    from paddle_pssl.explainers import build_explainer
    explainer = build_explainer(name, resnet, scales=[0.5, 1.0, 1.5], flip=True, normalize=None)
    maps = explainer(images, TARGETS)
    mirrored = explainer(np.ascontiguousarray(images[..., ::-1]), TARGETS)
    assert maps.max() > 0
    np.testing.assert_allclose(mirrored, maps[..., ::-1], rtol=1e-4, atol=1e-5 * maps.max())
    # without the mirror a random-weight network is not symmetric: the option does something
    plain = build_explainer(name, resnet, normalize=None)
    assert not np.allclose(plain(images[..., ::-1].copy(), TARGETS), plain(images, TARGETS)[..., ::-1],
                           atol=1e-3 * maps.max())


def test_scales_are_the_mean_of_resized_inputs_and_scale_one_is_plain_cam(resnet, images):  # noqa: F811
    from paddle_pssl.explainers import ExplainerEnsemble, build_explainer
    from paddle_pssl.explainers.base import upsample
    from paddle_pssl.explainers.cam import resize_batch
    plain = build_explainer('cam', resnet, normalize=None)
    np.testing.assert_array_equal(build_explainer('cam', resnet, scales=[1.0], normalize=None)(images, TARGETS),
                                  plain(images, TARGETS))
    size = images.shape[2:]
    by_hand = np.mean([upsample(plain(resize_batch(images, [int(v * s) for v in size]), TARGETS), size)
                       for s in (0.5, 2.0)], axis=0)
    multi = build_explainer('cam', resnet, scales=[0.5, 2.0], normalize=None)(images, TARGETS)
    np.testing.assert_allclose(multi, by_hand, rtol=1e-5, atol=1e-6 * by_hand.max())
    # in the ensemble the clean forward is shared; the maps are the same
    shared = ExplainerEnsemble(resnet, {'cam': {'scales': [1.0, 2.0], 'flip': True}})(images, TARGETS)['cam']
    np.testing.assert_allclose(shared, build_explainer('cam', resnet, scales=[1.0, 2.0], flip=True)(images, TARGETS),
                               atol=1e-5)


def test_bad_scales_and_flip_are_one_line_errors(resnet):  # noqa: F811
    from paddle_pssl.explainers import build_explainer, check_explainer_options
    assert check_explainer_options({'cam': {'scales': [0.5, 1, 2.0], 'flip': True}, 'gradcam': {'flip': False}}) is None
    assert check_explainer_options({'cam': {'scales': [0, 1]}}) == \
        'explainers.cam.scales [0, 1]: must be a list of numbers in [0.1, 4]'
    assert check_explainer_options({'cam': {'scales': 2}}) == \
        'explainers.cam.scales 2: must be a non-empty list of numbers'
    assert check_explainer_options({'gradcam': {'flip': 'yes'}}) == \
        "explainers.gradcam.flip 'yes': must be true or false"
    assert check_explainer_options({'smoothgrad': {'flip': True}}).startswith(
        'explainers.smoothgrad.flip: unknown option of smoothgrad')
    with pytest.raises(ValueError, match='scales'):
        build_explainer('cam', resnet, scales=[])


# ------------------------------------------------------------- consensus
def _blobs(seed, size=64):
    """Three smooth maps of one object, each offset and blurred differently."""
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(3):
        m = np.zeros((size, size), np.float32)
        cy, cx = (size // 2 + rng.integers(-6, 7, 2))
        cv2.circle(m, (int(cx), int(cy)), int(rng.integers(8, 16)), 1.0, -1)
        m = cv2.GaussianBlur(m, (0, 0), float(rng.uniform(3, 8))) + 0.1 * rng.random((size, size))
        maps.append((m / m.max()).astype(np.float32))
    return maps


@pytest.mark.parametrize('method, value', [('otsu', 1.0), ('mean', 1.0), ('fixed', 0.3), ('percentile', 0.4)])
def test_a_raised_cut_never_adds_foreground(method, value):
    for seed in range(4):
        maps = _blobs(seed)
        for combine in ('mean', 'loo'):
            masks = [cons.make_pseudo_label(maps, method=method, value=value, combine=combine, bias=b)[1]
                     for b in (0.0, 0.1, 0.3, 0.6)]
            for looser, tighter in zip(masks, masks[1:]):
                assert not (tighter & (1 - looser)).any()   # a subset, not just fewer pixels
            assert masks[-1].sum() < masks[0].sum() and masks[-1].any()


def test_cut_bias_by_hand():
    saliency = np.array([[0.0, 0.2], [0.6, 1.0]], np.float32)
    assert cons.threshold_value(saliency, 'fixed', 0.2, bias=0.5) == pytest.approx(0.6)
    assert cons.threshold_value(saliency, 'fixed', 0.2, bias=0.0) == pytest.approx(0.2)
    flat = np.full((4, 4), 0.5, np.float32)   # nothing above the cut: the bias cannot go below it
    assert cons.threshold_value(flat, 'fixed', 0.7, bias=0.5) == pytest.approx(0.7)


def test_per_classifier_quorum_is_a_vote_of_the_classifiers():
    groups = [(_blobs(seed)[:2], None) for seed in range(3)]
    rule = {'method': 'otsu', 'combine': 'loo'}
    own = [cons.make_pseudo_label(maps, **rule)[1] for maps, _ in groups]
    every = cons.per_classifier_label(groups, 1.0, **rule)
    np.testing.assert_array_equal(every[1], np.logical_and.reduce(own).astype(np.uint8))
    np.testing.assert_array_equal(cons.per_classifier_label(groups, 0.3, **rule)[1],
                                  np.logical_or.reduce(own).astype(np.uint8))
    two_of_three = cons.per_classifier_label(groups, 0.6, **rule)
    np.testing.assert_array_equal(two_of_three[1], (np.sum(own, axis=0) >= 2).astype(np.uint8))
    shares = [cons.make_pseudo_label(maps, **rule)[2] for maps, _ in groups]
    np.testing.assert_allclose(two_of_three[2], np.mean(
        [np.where(m == two_of_three[1], c, 1 - c) for m, c in zip(own, shares)], axis=0), atol=1e-6)
    assert every[1].sum() <= two_of_three[1].sum()
    # one classifier: its own label
    alone = cons.per_classifier_label(groups[:1], 0.5, **rule)
    for got, want in zip(alone, cons.make_pseudo_label(groups[0][0], **rule)):
        np.testing.assert_allclose(got, want)


@pytest.mark.parametrize('consensus, needle', [
    ({'cut_bias': 1.0}, 'g.yml: consensus.cut_bias 1.0: must be < 1'),
    ({'cut_bias': -0.1}, 'g.yml: consensus.cut_bias -0.1: must be >= 0'),
    ({'quorum': 0}, 'g.yml: consensus.quorum 0: must be > 0'),
    ({'quorum': 1.5}, 'g.yml: consensus.quorum 1.5: must be <= 1'),
    ({'per_classifier': 'yes'}, "g.yml: consensus.per_classifier 'yes': must be true or false"),
])
def test_bad_cut_settings_are_one_line_errors(consensus, needle):
    with pytest.raises(PSSLError) as e:
        validate('generator', {'source': {'image_root': 'x'}, 'consensus': consensus}, 'g.yml')
    assert str(e.value) == needle


def test_generator_cuts_per_classifier_with_a_raised_cut(tmp_path, monkeypatch):
    """Fixed maps in place of the explainers: the store holds the per-classifier
    vote of the raised cuts; the default settings keep old stores' fingerprint."""
    from conftest import write_photo_source
    from paddle_pssl.pseudo_labels import store
    from paddle_pssl.pseudo_labels.generate import PseudoLabelGenerator
    rng = np.random.default_rng(3)
    source = write_photo_source(tmp_path / 'src', [(3, k, rng.integers(0, 255, (64, 64, 3), np.uint8))
                                                   for k in range(2)])
    blobs = _blobs(5)
    maps = {'a/cam': blobs[0], 'a/smoothgrad': blobs[1], 'b/cam': blobs[2], 'b/smoothgrad': blobs[0] ** 2}
    monkeypatch.setattr(PseudoLabelGenerator, 'explain',
                        lambda self, images, class_ids, seeds: [dict(maps) for _ in images])
    base = {'source': source, 'classifiers': [{'name': 'efficientnet_lite0'}], 'explainers': ['cam'],
            'output': {'pssl_root': str(tmp_path / 'plain'), 'batch_size': 2}}
    consensus = {'method': 'loo', 'threshold': 'otsu', 'cut_bias': 0.2, 'per_classifier': True, 'quorum': 1.0}
    gen = PseudoLabelGenerator(dict(base, consensus=consensus,
                                    output=dict(base['output'], pssl_root=str(tmp_path / 'out'))))
    assert gen.run(progress=False)['written'] == 2
    want = cons.per_classifier_label([([maps['a/cam'], maps['a/smoothgrad']], None),
                                      ([maps['b/cam'], maps['b/smoothgrad']], None)], 1.0,
                                     method='otsu', combine='loo', bias=0.2)
    for rel in open(os.path.join(gen.root, store.FILE_LIST)).read().split():
        mask, confidence = store.read_label(os.path.join(gen.root, rel))
        np.testing.assert_array_equal(mask, want[1])
        np.testing.assert_allclose(confidence, want[2], atol=1 / 255)
    assert {'cut_bias', 'per_classifier', 'quorum'} <= set(gen.label_settings()['consensus'])
    plain = PseudoLabelGenerator(base).label_settings()['consensus']
    assert not {'cut_bias', 'per_classifier', 'quorum'} & set(plain)


# ----------------------------------------------------------- real photos
def test_real_masked_photos_load_with_their_imagenet_classes(tmp_path):
    from paddle_pssl.datasets.real_photos import FIRST_TWO, PHOTOS, make_real_masked_set
    from paddle_pssl.pseudo_labels.evaluate import gt_path, read_gt_mask
    assert len(PHOTOS) >= 7 and set(FIRST_TWO) <= set(PHOTOS)
    data = make_real_masked_set(str(tmp_path / 'set'))
    paths = sorted(os.path.relpath(os.path.join(d, f), data['image_root'])
                   for d, _, fs in os.walk(data['image_root']) for f in fs)
    assert len(paths) == len(PHOTOS)
    for rel in paths:
        image = cv2.imread(os.path.join(data['image_root'], rel))
        mask = read_gt_mask(gt_path(data['gt_root'], rel), image.shape[:2])
        assert 0.005 < mask.mean() < 0.5, rel    # an object, not the whole photo
    # one photo, several classes: the masks differ and do not overlap much
    voc = [read_gt_mask(gt_path(data['gt_root'], r)) for r in paths if 'voc2007000129' in r]
    assert len(voc) == 3 and all((a & b).sum() < 0.2 * min(a.sum(), b.sum())
                                 for i, a in enumerate(voc) for b in voc[i + 1:])


def test_previous_default_config_is_the_default_with_its_maps_and_cut_changed():
    from paddle_pssl.config import load_yaml
    from paddle_pssl.explainers import check_explainer_options
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    previous = validate('generator', load_yaml(
        os.path.join(root, 'configs', 'pseudo_labels', 'cam_smoothgrad.yml')))
    fit = validate('generator', load_yaml(os.path.join(root, 'configs', 'pseudo_labels',
                                                       'imagenet_efficientnet_lite.yml')))
    assert check_explainer_options(fit['explainers']) is None
    assert set(fit['explainers']) == {'cam', 'gradcam'}   # no SmoothGrad in the default
    assert set(previous['explainers']) == {'cam', 'smoothgrad'}   # _inherited_: false
    assert fit['consensus']['postprocess'] == 'pmm' and previous['consensus']['postprocess'] == 'none'
    default = previous
    assert {k for k in fit if fit[k] != default[k]} == {'explainers', 'consensus'}
    assert {k for k in fit['consensus'] if fit['consensus'][k] != default['consensus'][k]} == \
        {'cut_bias', 'postprocess'}
