"""Match: build triplets from labelled patches by growing a graph per class.

Mix-and-Match tuning (docs/methods.md section 4): visit the patches in random
order; each becomes an anchor linked to a random already-visited patch of its
own class (positive) and a random already-visited patch of another class
(negative). Within a class every later patch links to an earlier one, so the
anchor-positive edges form a tree and each class's graph is connected.

Anchors with no visited partner yet (the method is silent on them):
- The first visited patch of a class with >= 2 patches looks ahead: its
  positive is a random patch of its class, all of which are still unvisited.
  The tree of the later patches already contains it, so the extra edge keeps
  the class graph connected.
- An anchor with no visited patch of another class yet looks ahead the same
  way: its negative is a random patch of any other class.
- A patch alone in its class has no positive, and when the batch holds a
  single class nothing has a negative: such anchors give no triplet.
Upstream's Caffe layer fills the same gaps after the pass from all patches;
looking ahead draws from the same set, so the two agree in distribution.
"""
import numpy as np

__all__ = ["build_triplets", "eligible_anchors"]


def eligible_anchors(labels):
    """Bool mask of patches that get a triplet: their class has >= 2 patches
    and at least one other class is present."""
    labels = np.asarray(labels).reshape(-1)
    classes, inverse, counts = np.unique(labels, return_inverse=True,
                                         return_counts=True)
    if classes.size < 2:
        return np.zeros(labels.shape, dtype=bool)
    return counts[inverse] >= 2


def build_triplets(labels, rng=None, return_order=False):
    """One (anchor, positive, negative) triplet per eligible patch.

    Args:
        labels (array-like): [P] int class of each patch.
        rng: np.random.Generator, seed or None.
        return_order (bool): also return the visiting order [P] (all patches,
            eligible or not), for inspection and tests.

    Returns:
        anchor, positive, negative: int64 arrays [T] of patch indices, in
        visiting order; T = number of eligible patches (see
        ``eligible_anchors``), each eligible patch is an anchor exactly once.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    labels = np.asarray(labels).reshape(-1)
    eligible = eligible_anchors(labels)
    members = {}  # class -> all its patch indices (for look-ahead)
    for index, cls in enumerate(labels.tolist()):
        members.setdefault(cls, []).append(index)
    all_classes = list(members)
    visited = {cls: [] for cls in all_classes}
    n_visited = 0

    anchors, positives, negatives = [], [], []
    order = rng.permutation(labels.size)
    for index in order.tolist():
        cls = labels[index].item()
        if eligible[index]:
            own = visited[cls]
            if own:
                positive = own[rng.integers(len(own))]
            else:
                # first of its class: every other member is still unvisited
                candidates = [m for m in members[cls] if m != index]
                positive = candidates[rng.integers(len(candidates))]
            n_other = n_visited - len(own)
            pool = visited
            if n_other == 0:
                # no other class visited yet: look ahead to any of them
                pool, n_other = members, labels.size - len(members[cls])
            # k-th patch of the other classes' pool, without building the list
            k = int(rng.integers(n_other))
            for other in all_classes:
                if other == cls:
                    continue
                if k < len(pool[other]):
                    negative = pool[other][k]
                    break
                k -= len(pool[other])
            anchors.append(index)
            positives.append(positive)
            negatives.append(negative)
        visited[cls].append(index)
        n_visited += 1
    triplets = tuple(
        np.asarray(v, dtype=np.int64) for v in (anchors, positives, negatives))
    if return_order:
        return triplets + (order.astype(np.int64), )
    return triplets
