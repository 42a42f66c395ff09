"""LIME's linear fit on scikit-learn >= 1.2: ``Ridge(normalize=True)`` written out.

InterpretDL 0.8.0's ``LimeBase._fitting_data`` fits
``Ridge(alpha=0, fit_intercept=True, normalize=True)``; scikit-learn 1.2 removed
``normalize``, so LIME raises ``TypeError`` there. scikit-learn 1.1.3 (the last
release with it) has no wheel for Python 3.12+, where this project installs a
newer one. :func:`install` then points ``_lime_base``'s ``Ridge`` at
:func:`lime_ridge`, which hands ``normalize=True`` fits to :class:`NormalizedRidge`
(the same steps as 1.1.3: weighted centring, columns scaled to unit weighted
norm, rows scaled by sqrt(weight), Cholesky solve with 1.1.3's fallbacks) and
every other call to scikit-learn's own ``Ridge``. Nothing changes where
scikit-learn < 1.2 is installed (Python 3.11). Dense inputs only, as LIME's.
"""
import numpy as np
from scipy import linalg


def sklearn_has_normalize():
    """True where scikit-learn's Ridge still takes ``normalize`` (< 1.2)."""
    import sklearn

    major, minor = (int(part) for part in sklearn.__version__.split(".")[:2])
    return (major, minor) < (1, 2)


class NormalizedRidge:
    """scikit-learn 1.1.3's ``Ridge(alpha, fit_intercept=True, normalize=True)``
    for dense X and a 1-D target: ``fit``, ``predict``, ``score``, ``coef_``,
    ``intercept_``. Matches 1.1.3 to float rounding (tests/test_lime_ridge.py)."""

    def __init__(self, alpha=1.0, random_state=None):
        self.alpha = float(alpha)
        self.random_state = random_state  # unused by the solvers 1.1.3 picks here

    def fit(self, X, y, sample_weight=None):
        X = np.array(X, dtype=np.float32 if np.asarray(X).dtype == np.float32 else np.float64)
        y = np.asarray(y, dtype=X.dtype).reshape(-1)
        n, n_features = X.shape
        sw = np.ones(n, X.dtype) if sample_weight is None else np.asarray(sample_weight, X.dtype).reshape(-1)
        # weighted mean and variance (two-pass with correction, in float64)
        count = np.sum(sw.astype(np.float64)[:, None] * np.ones_like(X, dtype=bool), axis=0)
        offset = np.matmul(sw, X, dtype=np.float64) / count
        centred = X - offset
        correction = np.matmul(sw, centred, dtype=np.float64)
        var = (np.matmul(sw, centred ** 2, dtype=np.float64) - correction ** 2 / count) / count
        offset, var = offset.astype(X.dtype), var.astype(X.dtype)
        eps = np.finfo(np.float64).eps
        constant = var <= n * eps * var + (n * offset * eps) ** 2
        scale = np.sqrt(var * sw.sum())
        scale[constant] = 1.0
        Xs = (X - offset) / scale
        y_offset = np.average(y, weights=sw)
        root = np.sqrt(sw)
        Xs, ys = Xs * root[:, None], ((y - y_offset) * root)[:, None]
        coef = self._solve(Xs, ys).ravel()
        self.coef_ = coef / scale
        self.intercept_ = y_offset - np.dot(offset, self.coef_)
        return self

    def _solve(self, X, y):
        """1.1.3's 'cholesky' solver: the dual (kernel) form when there are
        more features than samples, least squares / SVD where it fails."""
        if X.shape[1] > X.shape[0]:
            K = X @ X.T
            K.flat[::K.shape[0] + 1] += self.alpha
            try:
                dual = linalg.solve(K, y, assume_a="pos", overwrite_a=False)
            except np.linalg.LinAlgError:  # 1.1.3 solves the same K (alpha added) by least squares
                dual = linalg.lstsq(K, y)[0]
            return (X.T @ dual).T
        try:
            A = X.T @ X
            A.flat[::A.shape[0] + 1] += self.alpha
            return linalg.solve(A, X.T @ y, assume_a="pos", overwrite_a=True).T
        except np.linalg.LinAlgError:
            U, s, Vt = linalg.svd(X, full_matrices=False)
            keep = s > 1e-15
            d = np.zeros((s.size, 1), X.dtype)
            d[keep] = s[keep][:, None] / (s[keep][:, None] ** 2 + self.alpha)
            return (Vt.T @ (d * (U.T @ y))).T

    def predict(self, X):
        return np.asarray(X) @ self.coef_ + self.intercept_

    def score(self, X, y, sample_weight=None):
        from sklearn.metrics import r2_score

        return r2_score(y, self.predict(X), sample_weight=sample_weight)


def lime_ridge(*args, normalize=False, **kwargs):
    """Stand-in for ``sklearn.linear_model.Ridge`` inside InterpretDL's
    ``_lime_base``: ``normalize=True`` (with ``fit_intercept=True``) gets
    :class:`NormalizedRidge`, anything else scikit-learn's ``Ridge``."""
    from sklearn.linear_model import Ridge

    if normalize and kwargs.get("fit_intercept", True) and not args:
        return NormalizedRidge(alpha=kwargs.get("alpha", 1.0), random_state=kwargs.get("random_state"))
    if normalize:
        raise ValueError("lime_ridge: normalize=True is written out for keyword arguments "
                         "with fit_intercept=True only")
    return Ridge(*args, **kwargs)


def install():
    """Point InterpretDL's LIME at :func:`lime_ridge` where scikit-learn >= 1.2
    (idempotent; a no-op on older scikit-learn)."""
    if sklearn_has_normalize():
        return False
    from interpretdl.interpreter import _lime_base

    _lime_base.Ridge = lime_ridge
    return True
