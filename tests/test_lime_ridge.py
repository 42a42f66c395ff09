"""LIME's ``Ridge(normalize=True)`` written out for scikit-learn >= 1.2
(paddle_pssl/explainers/lime_ridge.py): equal to scikit-learn 1.1.3's own fit
where 1.1.3 is installed (Python 3.11), and LIME end to end on any stack."""
import warnings

import numpy as np
import pytest

from paddle_pssl.explainers import build_explainer
from paddle_pssl.explainers.base import import_interpretdl
from paddle_pssl.explainers.lime_ridge import NormalizedRidge, lime_ridge, sklearn_has_normalize

import_interpretdl()
from interpretdl.interpreter import _lime_base  # noqa: E402


def lime_problem(n_samples, n_features, seed, constant_column=False):
    """A design, target and kernel weights as InterpretDL's LIME builds them:
    0/1 rows (row 0 all on), cosine distance to row 0, LIME's kernel."""
    from sklearn.metrics import pairwise_distances

    rng = np.random.RandomState(seed)
    design = rng.randint(0, 2, (n_samples, n_features))
    design[0] = 1
    if constant_column:
        design[:, 3] = 1
    truth = rng.normal(0, 0.3, n_features)
    scores = 1 / (1 + np.exp(-(design @ truth - truth.sum() / 2))) + rng.normal(0, 0.02, n_samples)
    distances = pairwise_distances(design, design[:1], metric="cosine").ravel()
    weights = np.sqrt(np.exp(-distances ** 2 / 0.25 ** 2))  # LimeBase's kernel, width 0.25
    return design, scores.astype(np.float32), weights, distances


CASES = [(200, 40, 0, False), (120, 30, 1, True), (30, 60, 2, False), (64, 64, 3, False)]


@pytest.mark.skipif(not sklearn_has_normalize(), reason="needs scikit-learn < 1.2 (1.1.3 on Python 3.11)")
@pytest.mark.parametrize("n_samples,n_features,seed,constant", CASES)
def test_normalized_ridge_equals_sklearn_113(n_samples, n_features, seed, constant):
    from sklearn.linear_model import Ridge

    X, y, w, d = lime_problem(n_samples, n_features, seed, constant)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 1.1's normalize FutureWarning, ill-conditioned solves
        ref = Ridge(alpha=0, fit_intercept=True, normalize=True, random_state=0).fit(X, y, sample_weight=w)
        ours = NormalizedRidge(alpha=0).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-6, atol=1e-6)
    assert ours.score(X, y, sample_weight=w) == pytest.approx(ref.score(X, y, sample_weight=w), abs=1e-6)
    # InterpretDL's own fit, once with scikit-learn's Ridge and once with the shim
    base = _lime_base.LimeBase(random_state=0)
    saved = _lime_base.Ridge
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _lime_base.Ridge = Ridge
            ref_fit = base._fitting_data(X, y[:, None], d, 0)
            _lime_base.Ridge = lime_ridge
            our_fit = base._fitting_data(X, y[:, None], d, 0)
    finally:
        _lime_base.Ridge = saved
    assert [f for f, _ in our_fit[1]] == [f for f, _ in ref_fit[1]]
    np.testing.assert_allclose([c for _, c in our_fit[1]], [c for _, c in ref_fit[1]], rtol=1e-6, atol=1e-6)
    assert our_fit[2] == pytest.approx(ref_fit[2], abs=1e-6)


def test_shim_is_active_only_where_normalize_is_gone():
    assert (_lime_base.Ridge is lime_ridge) == (not sklearn_has_normalize())


def test_lime_fit_recovers_an_exact_linear_model():
    """On any stack: a target that is exactly linear in the design is fitted
    exactly (weighted R^2 = 1), through InterpretDL's own ``_fitting_data``."""
    X, _, _, distances = lime_problem(150, 25, 4)
    rng = np.random.RandomState(5)
    coef = rng.normal(0, 1, 25)
    y = X @ coef + 0.7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        intercept, weights, r2, _ = _lime_base.LimeBase(random_state=0)._fitting_data(X, y[:, None], distances, 0)
    fitted = np.zeros(25)
    for feature, value in weights:
        fitted[feature] = value
    np.testing.assert_allclose(fitted, coef, atol=1e-8)
    assert intercept == pytest.approx(0.7, abs=1e-8)
    assert r2 == pytest.approx(1.0, abs=1e-10)


def test_lime_runs_end_to_end_on_a_real_photo():
    """LIME with a real PaddleClas ResNet-18 (random weights) on a real photo,
    on whichever stack is installed: superpixel weights, a map in [0, 1] that
    is not flat, and the fit's R^2 at most 1."""
    import paddle
    from paddleclas.ppcls.arch.backbone.legendary_models.resnet import ResNet18
    from skimage import data
    from skimage.transform import resize

    from paddle_pssl.classifiers import IMAGENET_MEAN, IMAGENET_STD, Classifier

    paddle.seed(0)
    model = ResNet18(class_num=10)
    model.eval()
    clf = Classifier(model, "resnet18", "blocks.7", input_size=64, num_classes=10, fc_layer="fc")
    photo = resize(data.coffee(), (64, 64), anti_aliasing=True).astype(np.float32)
    x = ((photo - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32))
    x = np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
    explainer = build_explainer("lime", clf, num_samples=60, seed=0, batch_size=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = explainer(x, [3])
    assert maps.shape == (1, 64, 64) and np.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() == pytest.approx(1.0) and len(np.unique(maps)) > 2
    assert explainer.last_scores[0] <= 1 + 1e-9
    assert explainer.last_segments[0].max() + 1 > 5  # several superpixels were fitted
