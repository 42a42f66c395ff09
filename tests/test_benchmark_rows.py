"""The benchmark's rows of known label quality and its paired statistics."""
import numpy as np
import paddle
import pytest

from paddle_pssl.benchmark import label_sources as ls
from paddle_pssl.benchmark.stats import fmt_difference, paired_difference, slope_interval
from paddle_pssl.datasets import WeightedPSSLDataset, synthetic
from paddle_pssl.datasets.classification_set import list_source
from paddle_pssl.losses import PSSLCrossEntropyLoss
from paddle_pssl.pseudo_labels import store
from paddle_pssl.pseudo_labels.evaluate import evaluate_store


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    # the main job's source set, at a third of its images per class
    src = synthetic.make_source_set(str(tmp_path_factory.mktemp('src')), 6, 14, 48, seed=0)
    items, names = list_source(src['image_root'], None, src['synsets'])
    return src, items, names, ls.source_masks(src, items)


def test_paired_t_interval_on_known_values():
    d = paired_difference([1.0, 3.0, 5.0, 7.0, 9.0], [0.0, 1.0, 2.0, 3.0, 4.0])   # diffs 1..5
    assert d['mean'] == pytest.approx(3.0) and d['std'] == pytest.approx(1.5811388, abs=1e-6)
    # t(0.975, 4) = 2.7764451; half width = 2.7764451 * 1.5811388 / sqrt(5)
    assert d['low'] == pytest.approx(3.0 - 1.9632, abs=1e-4) and d['high'] == pytest.approx(4.9632, abs=1e-4)
    assert d['resolved'] and d['n'] == 5 and d['per_seed'] == [1.0, 2.0, 3.0, 4.0, 5.0]
    spread = paired_difference([0.1, -0.2, 0.15], [0.0, 0.0, 0.0])
    assert not spread['resolved'] and spread['low'] < 0 < spread['high']
    assert fmt_difference(d) == '+3.000 ± 1.581 [+1.037, +4.963]'
    one = paired_difference([0.5], [0.25])
    assert one['low'] is None and not one['resolved'] and fmt_difference(one) == '+0.250 (one seed)'


def test_paired_bootstrap_interval_brackets_the_mean():
    diffs = np.array([0.02, 0.05, 0.03, 0.04, 0.01, 0.06, 0.03])
    d = paired_difference(diffs, np.zeros_like(diffs), method='bootstrap')
    assert d['low'] < d['mean'] < d['high'] and d['resolved']
    assert d == paired_difference(diffs, np.zeros_like(diffs), method='bootstrap')   # seeded


def test_slope_interval_on_an_exact_line_and_on_noise():
    fit = slope_interval([0.2, 0.4, 0.6, 0.8, 1.0], [0.01, 0.03, 0.05, 0.07, 0.09])
    assert fit['slope'] == pytest.approx(0.1) and fit['low'] == pytest.approx(0.1)
    noisy = slope_interval([0.2, 0.4, 0.6, 0.8], [0.05, -0.04, 0.06, -0.05])
    assert noisy['low'] < 0 < noisy['high']


@pytest.mark.parametrize('kind', ls.DEGRADATIONS)
@pytest.mark.parametrize('target', [0.3, 0.6, 0.85])
def test_degrader_hits_its_target_miou(source, kind, target):
    _, items, _, gts = source
    cids = [it.class_id for it in items]
    masks, facts = ls.make_masks({'kind': 'degraded', 'degrade': kind, 'target_miou': target}, gts, cids)
    assert ls.set_miou(masks, gts, cids) == pytest.approx(target, abs=0.03)
    assert facts['strength'] > 0 and all(m.dtype == np.uint8 and m.max() <= 1 for m in masks)
    again, _ = ls.make_masks({'kind': 'degraded', 'degrade': kind, 'target_miou': target}, gts, cids)
    assert all(np.array_equal(a, b) for a, b in zip(masks, again))


def test_degrader_refuses_an_unreachable_target(source):
    _, items, _, gts = source
    with pytest.raises(Exception, match='out of reach'):
        ls.fit_strength(gts, [it.class_id for it in items], 'erode', 0.01)


def test_shuffled_masks_keep_the_share_and_lose_the_place(source):
    _, items, _, gts = source
    cids = [it.class_id for it in items]
    masks, _ = ls.make_masks({'kind': 'shuffled'}, gts, cids)
    order = ls.shuffled_order(len(gts))
    assert all(order[i] != i for i in range(len(order))) and sorted(order) == list(range(len(order)))
    assert np.mean([m.mean() for m in masks]) == pytest.approx(np.mean([g.mean() for g in gts]))
    assert ls.set_miou(masks, gts, cids) < 0.35


def test_exact_store_is_read_by_the_same_dataset_and_loss(source, tmp_path):
    from paddleseg import transforms as T
    src, items, _, gts = source
    root = tmp_path / 'labels_exact'
    ls.build_store(str(root), {'kind': 'exact'}, src)
    assert evaluate_store(str(root), src['gt_root'])['miou'] == pytest.approx(1.0)
    ds = WeightedPSSLDataset([T.Normalize()], src['image_root'], str(root), use_confidence=True)
    assert len(ds) == len(items)
    first = ds[0]
    rel = store.image_relpath(open(root / store.FILE_LIST).read().split()[0])
    item = next(it for it in items if it.rel == rel)
    gt = gts[items.index(item)]
    assert np.array_equal(first['label'], np.where(gt == 1, item.class_id, store.BACKGROUND))
    assert np.all(first['weight'] == 1.0)
    logit = paddle.to_tensor(np.random.default_rng(0).normal(size=(1, store.NUM_CLASSES, 48, 48)),
                             dtype='float32')
    loss = PSSLCrossEntropyLoss(background_weight=0.1, background_index=store.BACKGROUND)(
        logit, paddle.to_tensor(first['label'][None]), paddle.to_tensor(first['weight'][None]))
    assert np.isfinite(float(loss))
    # built again with the same settings (a resumed run): the files are kept as they are
    before = (root / store.FILE_LIST).stat().st_mtime_ns, sorted(p.stat().st_mtime_ns for p in root.rglob('*.npz'))
    ls.build_store(str(root), {'kind': 'exact'}, src)
    assert before == ((root / store.FILE_LIST).stat().st_mtime_ns,
                      sorted(p.stat().st_mtime_ns for p in root.rglob('*.npz')))


def test_dose_response_generator_variants_are_what_they_say():
    """A variant's overrides merge into its generator config key by key: 'CAM
    alone' must drop the default's SmoothGrad, not add CAM to it."""
    import os
    from paddle_pssl.config import load_yaml, merge_dicts
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    base = load_yaml(os.path.join(repo, 'configs', 'benchmark', 'pseudo_labels.yml'))
    rows = {r['key']: r for r in load_yaml(os.path.join(repo, 'configs', 'benchmark', 'dose_response.yml'))['inits']}

    def explainers(key):
        spec = rows[key]['labels']
        start = load_yaml(os.path.join(repo, spec['config'])) if spec.get('config') else base
        return set(merge_dicts(start, spec.get('overrides') or {})['explainers'])

    keys = ('cam_only', 'previous_default', 'cam_smoothgrad', 'c_pssl_class_weighted')
    assert {key: explainers(key) for key in keys} == {
        'cam_only': {'cam', 'gradcam'}, 'previous_default': {'cam', 'gradcam', 'smoothgrad', 'lime'},
        'cam_smoothgrad': {'cam', 'smoothgrad'}, 'c_pssl_class_weighted': {'cam', 'gradcam'}}

    def consensus(key):
        spec = rows[key]['labels']
        start = load_yaml(os.path.join(repo, spec['config'])) if spec.get('config') else base
        return merge_dicts(start, spec.get('overrides') or {})['consensus']

    # the variants are the settings they name, not the default's raised cut and PMM on top
    for key in ('cam_only', 'previous_default', 'cam_smoothgrad'):
        assert (consensus(key)['cut_bias'], consensus(key)['postprocess']) == (0.0, 'none'), key
    assert (consensus('c_pssl_class_weighted')['cut_bias'], consensus('c_pssl_class_weighted')['postprocess']) \
        == (0.2, 'pmm')
    # the default's multi-scale CAM does not leak into a variant's plain CAM
    assert all('scales' not in (load_yaml(os.path.join(repo, rows[k]['labels']['config']))['explainers']['cam'])
               for k in ('cam_only', 'cam_smoothgrad'))


def test_dose_response_point_labels_do_not_overlap():
    """Eleven points clustered as the measured dose-response was (label mIoU
    0.4-0.5, gains within 0.03): every label gets a box of its own."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.text
    from paddle_pssl.benchmark.report import place_labels
    xs = [0.239, 0.265, 0.336, 0.408, 0.408, 0.499, 0.500, 0.501, 0.700, 0.702, 1.0]
    ys = [0.074, 0.065, 0.068, 0.076, 0.100, 0.081, 0.078, 0.101, 0.098, 0.082, 0.081]
    names = ['(e) floor', 'previous labels (CAM, Grad-CAM', 'CAM alone (Grad-CAM where no', '(c) PSSL',
             'default + PMM (CoV, PPMG)', 'exact masks, dilated (0.5)', 'exact masks, shifted (0.5)',
             'exact masks, eroded (0.5)', 'exact masks, blotted (0.7)', 'exact masks, boxed (0.7)', '(d) ceiling']
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(xs, ys, 'o')
    ax.set_ylim(-0.05, 0.2)
    fig.tight_layout()
    notes = place_labels(ax, list(zip(xs, ys, names)))
    fig.canvas.draw()    # the positions as drawn
    renderer = fig.canvas.get_renderer()
    boxes = [matplotlib.text.Text.get_window_extent(n, renderer) for n in notes]
    assert len(boxes) == len(names)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
    plt.close(fig)
