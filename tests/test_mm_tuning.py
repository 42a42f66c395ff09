"""Mix-and-Match tuning: patch sampling (Mix), triplet graph (Match), loss."""
import numpy as np
import paddle
import pytest

from paddle_pssl.losses.triplet import MixMatchTripletLoss
from paddle_pssl.mm_tuning import (PatchSampler, build_triplets,
                                   covered_fraction, eligible_anchors,
                                   sample_batch_patches, select_boxes)


def _toy_label(h=375, w=500, ignore=255):
    """Background 0, two objects (3 and 7), an ignore band like VOC's."""
    label = np.zeros((h, w), dtype=np.int64)
    label[60:300, 80:300] = 3
    label[100:330, 320:480] = 7
    label[58:60, 80:300] = ignore
    label[300:302, 80:300] = ignore
    return label


def _label_image(label):
    """An image whose every channel holds the label, to read centres back."""
    return np.repeat(label[:, :, None], 3, axis=2).astype(np.float32)


# ---------------------------------------------------------------- Match


def _check_triplets(labels, anchor, positive, negative, order=None):
    labels = np.asarray(labels)
    eligible = eligible_anchors(labels)
    # exactly one triplet per eligible patch, none for the others
    assert sorted(anchor.tolist()) == np.flatnonzero(eligible).tolist()
    assert len(anchor) == len(positive) == len(negative)
    assert np.all(labels[positive] == labels[anchor])
    assert np.all(positive != anchor)
    assert np.all(labels[negative] != labels[anchor])
    # each class's anchor-positive graph is connected (union-find)
    parent = list(range(labels.size))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, p in zip(anchor.tolist(), positive.tolist()):
        parent[find(a)] = find(p)
    for cls in np.unique(labels[eligible]):
        roots = {find(i) for i in np.flatnonzero(labels == cls)}
        assert len(roots) == 1, "class {} graph not connected".format(cls)
    if order is None:
        return
    # partners are already visited, except when none exists yet (look-ahead)
    rank = np.empty(labels.size, np.int64)
    rank[order] = np.arange(labels.size)
    assert np.all(np.diff(rank[anchor]) > 0)  # triplets in visiting order
    for a, p, n in zip(anchor.tolist(), positive.tolist(), negative.tolist()):
        earlier = rank < rank[a]
        same_before = earlier & (labels == labels[a])
        other_before = earlier & (labels != labels[a])
        assert (rank[p] < rank[a]) == bool(same_before.any())
        assert (rank[n] < rank[a]) == bool(other_before.any())


@pytest.mark.parametrize("seed", range(20))
def test_graph_properties_random_labels(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, rng.integers(2, 8), size=rng.integers(2, 120))
    # a singleton class (no positive possible) in half the cases
    if seed % 2:
        labels = np.append(labels, 99)
    anchor, positive, negative, order = build_triplets(labels, rng=seed,
                                                       return_order=True)
    assert anchor.dtype == positive.dtype == negative.dtype == np.int64
    assert sorted(order.tolist()) == list(range(labels.size))
    _check_triplets(labels, anchor, positive, negative, order)
    # same triplets without the order
    plain = build_triplets(labels, rng=seed)
    assert all(np.array_equal(x, y) for x, y in zip(plain, (anchor, positive, negative)))


def test_graph_edge_cases():
    # one class only: no negative exists, so no triplet
    anchor, positive, negative = build_triplets([4, 4, 4, 4], rng=0)
    assert anchor.size == positive.size == negative.size == 0
    # all singletons: no positive exists
    assert build_triplets([0, 1, 2], rng=0)[0].size == 0
    assert build_triplets([], rng=0)[0].size == 0
    # a pair and a singleton: the pair anchors each other, the singleton is
    # every negative
    anchor, positive, negative = build_triplets([5, 9, 5], rng=0)
    assert sorted(anchor.tolist()) == [0, 2]
    assert dict(zip(anchor.tolist(), positive.tolist())) == {0: 2, 2: 0}
    assert negative.tolist() == [1, 1]
    # partners are random visited patches, not always the class's first one
    labels = np.repeat([0, 1], 50)
    anchor, positive, negative = build_triplets(labels, rng=0)
    assert len(set(positive[labels[anchor] == 0].tolist())) > 10
    assert len(set(negative[labels[anchor] == 0].tolist())) > 10


def test_graph_deterministic():
    labels = np.random.default_rng(0).integers(0, 5, 80)
    first = build_triplets(labels, rng=3)
    again = build_triplets(labels, rng=np.random.default_rng(3))
    other = build_triplets(labels, rng=4)
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    assert not all(np.array_equal(x, y) for x, y in zip(first, other))


# ---------------------------------------------------------------- loss


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_loss_matches_hand_computation():
    features = np.array([[3, 0], [0, 2], [-5, 0], [1, 1]], dtype=np.float32)
    # unit vectors: e0=(1,0) e1=(0,1) e2=(-1,0) e3=(1,1)/sqrt2; |e0-e3|^2 = 2 - sqrt2
    triplets = [(0, 3, 2), (0, 1, 3), (1, 3, 0)]
    s2 = np.sqrt(2.0)
    terms = [
        max(0.0, 2.1 + (2 - s2) - 4.0),  # 2.1 + 0.586 - 4 < 0: margin met, term 0
        max(0.0, 2.1 + 2.0 - (2 - s2)),  # 3.514
        max(0.0, 2.1 + (2 - s2) - 2.0),  # 0.686
    ]
    assert terms[0] == 0.0
    expected = sum(terms) / (2 * len(triplets))
    assert expected == pytest.approx(0.7)

    loss_fn = MixMatchTripletLoss()
    assert loss_fn.margin == 2.1
    a, p, n = (paddle.to_tensor(np.array(c, dtype=np.int64)) for c in zip(*triplets))
    x = paddle.to_tensor(features, stop_gradient=False)
    loss = loss_fn(x, a, p, n)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # [T, 3] form and numpy indices give the same value
    assert float(loss_fn(x, np.array(triplets))) == pytest.approx(expected, rel=1e-5)
    # same value from feature maps: global average pooling first
    maps = paddle.to_tensor(
        np.tile(features[:, :, None, None], (1, 1, 3, 5)), stop_gradient=False)
    assert float(loss_fn(maps, a, p, n)) == pytest.approx(expected, rel=1e-5)

    loss.backward()
    grad = x.grad.numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0
    # patch 2 appears only in the zero term: no gradient reaches it
    assert np.allclose(grad[2], 0.0)


def test_loss_against_numpy_random_and_margin():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(12, 7)).astype(np.float32)
    labels = rng.integers(0, 3, 12)
    a, p, n = build_triplets(labels, rng=1)
    for margin in (2.1, 0.5):
        e = _unit(feats)
        hinge = np.maximum(0, margin + ((e[a] - e[p])**2).sum(1) - ((e[a] - e[n])**2).sum(1))
        expected = hinge.sum() / (2 * len(a))
        got = MixMatchTripletLoss(margin=margin)(paddle.to_tensor(feats), a, p, n)
        assert float(got) == pytest.approx(expected, rel=1e-5)


def test_loss_no_triplets_is_zero_and_differentiable():
    x = paddle.to_tensor(np.ones((3, 4), np.float32), stop_gradient=False)
    empty = np.zeros(0, np.int64)
    loss = MixMatchTripletLoss()(x, empty, empty, empty)
    assert float(loss) == 0.0
    loss.backward()
    assert np.allclose(x.grad.numpy(), 0.0)


def test_loss_registered_in_paddleseg_manager():
    from paddleseg.cvlibs import manager
    assert manager.LOSSES["MixMatchTripletLoss"] is MixMatchTripletLoss


# ---------------------------------------------------------------- Mix


def test_overlap_rule_drops_over_60_percent_keeps_under():
    shape = (200, 200)
    kept_first = (0, 0, 100, 100)
    over = (0, 30, 100, 130)  # 70 of its 100 columns covered
    under = (0, 50, 100, 150)  # 50 covered
    coverage = np.zeros(shape, bool)
    coverage[0:100, 0:100] = True
    assert covered_fraction(coverage, over) == pytest.approx(0.7)
    assert covered_fraction(coverage, under) == pytest.approx(0.5)
    keep = select_boxes([kept_first, over, under], shape, max_overlap=0.6)
    assert keep.tolist() == [0, 2]
    # coverage is the union of kept boxes: (0,40)-(100,140) is 100 % covered
    # by boxes 0 and 2 together, though only 60 % by either alone
    keep = select_boxes([kept_first, under, (0, 40, 100, 140)], shape, 0.6)
    assert keep.tolist() == [0, 1]
    # exactly 60 % is not "more than 60 %": kept
    assert select_boxes([kept_first, (0, 40, 100, 140)], shape, 0.6).tolist() == [0, 1]
    # a border box is judged on its in-image part
    coverage = np.zeros(shape, bool)
    coverage[0:50, 0:50] = True
    assert covered_fraction(coverage, (-50, -50, 50, 50)) == 1.0
    # quotas per kind (0 = background, 1 = foreground)
    far = [(0, 0, 10, 10), (50, 50, 60, 60), (100, 100, 110, 110), (150, 150, 160, 160)]
    keep = select_boxes(far, shape, 0.6, kinds=[1, 1, 0, 1], quota=(1, 1))
    assert keep.tolist() == [0, 2]


def test_sampler_kept_patches_respect_overlap_rule():
    label = _toy_label()
    sampler = PatchSampler()
    for seed in range(10):
        boxes = sampler.sample_boxes(label, rng=seed)
        coverage = np.zeros(label.shape, bool)
        for y0, x0, y1, x1 in boxes["box"]:
            assert covered_fraction(coverage, (y0, x0, y1, x1)) <= 0.6
            coverage[max(y0, 0):y1, max(x0, 0):x1] = True
        assert np.all((boxes["side"] >= 64) & (boxes["side"] <= 256))
        assert len(boxes["side"]) <= sampler.num_patches


def test_foreground_background_ratio_near_90_10():
    label = np.zeros((512, 512), np.int64)
    label[:, :256] = 1
    label[0:128, 0:128] = 2
    label[500:, :] = 255
    sampler = PatchSampler(min_size=16, max_size=48)  # small: few drops
    fg, total = 0, 0
    for seed in range(300):
        boxes = sampler.sample_boxes(label, rng=seed)
        fg += int(boxes["foreground"].sum())
        total += len(boxes["foreground"])
        assert np.array_equal(boxes["foreground"], boxes["label"] != 0)
    assert total >= 0.98 * 300 * 10
    assert fg / total == pytest.approx(0.9, abs=0.01)

    # default sizes on a VOC-like image: overlap drops barely move the ratio
    fg, total = 0, 0
    for seed in range(300):
        boxes = PatchSampler().sample_boxes(_toy_label(), rng=seed)
        fg += int(boxes["foreground"].sum())
        total += len(boxes["foreground"])
    assert fg / total == pytest.approx(0.9, abs=0.04)

    # a ratio that is not a multiple of 1/num_patches, and custom background ids
    sampler = PatchSampler(num_patches=6, fg_ratio=0.75, min_size=16,
                           max_size=32, background_ids=(0, 2))
    fg, total = 0, 0
    for seed in range(400):
        boxes = sampler.sample_boxes(label, rng=seed)
        fg += int(boxes["foreground"].sum())
        total += len(boxes["foreground"])
        assert np.array_equal(boxes["foreground"], boxes["label"] == 1)
    assert fg / total == pytest.approx(0.75, abs=0.02)


def test_patch_labels_are_centre_pixel_classes():
    label = _toy_label()
    boxes = PatchSampler().sample_boxes(label, rng=0)
    cy, cx = boxes["center"].T
    assert np.array_equal(boxes["label"], label[cy, cx])
    # without resizing, the crop's centre pixel is the labelled pixel
    for side in (32, 33):
        sampler = PatchSampler(min_size=side, max_size=side, out_size=side,
                               pad_value=-1)
        images = [_label_image(label), _label_image(label.T.copy())]
        patches, labels, sources = sample_batch_patches(
            images, [label, label.T.copy()], sampler, rng=1)
        assert patches.shape == (len(labels), 3, side, side)
        assert np.array_equal(patches[:, 0, side // 2, side // 2], labels)


def test_batch_mixing_shapes_and_sources():
    rng = np.random.default_rng(0)
    label = _toy_label()
    images = rng.integers(0, 256, (3, ) + label.shape + (3, ), dtype=np.uint8)
    labels = np.stack([label, label, np.zeros_like(label)])
    patches, patch_labels, sources = sample_batch_patches(images, labels, rng=0)
    n = len(patch_labels)
    assert patches.shape == (n, 3, 128, 128) and patches.dtype == np.float32
    assert patch_labels.dtype == np.int64 and sources.dtype == np.int64
    assert set(sources.tolist()) == {0, 1, 2}
    # shuffled: sources are not grouped image by image
    assert not np.all(np.diff(sources) >= 0)
    assert np.all(patch_labels[sources == 2] == 0)  # image 2 is all background
    assert 0 <= patches.min() and patches.max() <= 255
    # channels-first input gives the same patches
    chw = sample_batch_patches(images.transpose(0, 3, 1, 2), labels[:, None],
                               rng=0, channels_first=True)
    assert np.array_equal(chw[0], patches) and np.array_equal(chw[1], patch_labels)


def test_border_patches_are_padded():
    label = np.ones((100, 100), np.int64)
    label[1:, :] = 255  # only the top row can be a centre
    image = np.full((100, 100, 3), 200, np.uint8)
    sampler = PatchSampler(num_patches=3, min_size=40, max_size=40, out_size=40,
                           pad_value=0)
    patches, labels = sampler(image, label, rng=0)
    assert len(labels) >= 1
    assert np.all(patches[:, :, :20, :] == 0)  # rows above the image
    assert np.all(patches[:, :, 20, 20] == 200)


def test_sampler_deterministic_with_seed():
    label = _toy_label()
    image = np.random.default_rng(0).integers(0, 256, label.shape + (3, ), dtype=np.uint8)
    a = sample_batch_patches([image, image], [label, label], rng=7)
    b = sample_batch_patches([image, image], [label, label], rng=np.random.default_rng(7))
    c = sample_batch_patches([image, image], [label, label], rng=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not (len(a[1]) == len(c[1]) and np.array_equal(a[0], c[0]))


def test_never_centred_on_ignore_pixels():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, (200, 260))
    label[rng.random(label.shape) < 0.8] = 255  # 80 % ignore, scattered
    label[:, :40] = 255
    sampler = PatchSampler(min_size=16, max_size=64)
    for seed in range(30):
        boxes = sampler.sample_boxes(label, rng=seed)
        cy, cx = boxes["center"].T
        assert np.all(label[cy, cx] != 255)
        assert np.all(boxes["label"] != 255)
    # another ignore id
    boxes = PatchSampler(ignore_index=3).sample_boxes(label, rng=0)
    assert len(boxes["label"]) > 0 and np.all(boxes["label"] != 3)
    # nothing but ignore: no patch at all, and an empty batch result
    only_ignore = np.full((80, 80), 255)
    assert len(sampler.sample_boxes(only_ignore, rng=0)["label"]) == 0
    patches, labels, sources = sample_batch_patches(
        [np.zeros((80, 80, 3))], [only_ignore], sampler, rng=0)
    assert patches.shape == (0, 3, 128, 128) and labels.size == sources.size == 0


def test_end_to_end_gradients_reach_features():
    label = _toy_label(200, 260)
    image = np.random.default_rng(0).integers(0, 256, label.shape + (3, ), dtype=np.uint8)
    sampler = PatchSampler(num_patches=6, min_size=32, max_size=96, out_size=32)
    patches, labels, _ = sample_batch_patches([image, image], [label, label],
                                              sampler, rng=0)
    anchor, positive, negative = build_triplets(labels, rng=0)
    assert len(anchor) > 0
    paddle.seed(0)
    conv = paddle.nn.Conv2D(3, 8, 3, stride=2)
    feats = conv(paddle.to_tensor(patches / 255.0))
    loss = MixMatchTripletLoss()(feats, anchor, positive, negative)
    loss.backward()
    assert float(loss) > 0 and float(conv.weight.grad.abs().sum()) > 0
