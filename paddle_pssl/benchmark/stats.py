"""Paired statistics: the one helper every benchmark table uses.

Two settings fine-tuned at the same seeds give one difference per seed; the
table reports their mean, sample standard deviation and a 95 % interval:
Student's t on the differences (``scipy.stats.t``), or a bootstrap over the
seeds (``scipy.stats.bootstrap``, BCa). A difference is claimed only when its
interval excludes zero. The dose-response slope is an ordinary least-squares
fit (``scipy.stats.linregress``) with a t interval on n - 2 degrees of freedom.
:func:`collect_runs` and :func:`pair_rows` turn the fine-tuning runs' metrics
into the rows and pairs of the benchmark's report.
"""
import json

import numpy as np


def paired_difference(values, baseline, confidence=0.95, method='t', seed=0):
    """Per-seed ``values - baseline`` (equal-length sequences, same seed
    order) -> {mean, std, low, high, n, per_seed, resolved}. ``std`` is the
    sample standard deviation (ddof 1); ``low``/``high`` bound the mean's
    ``confidence`` interval (None with fewer than 2 seeds); ``resolved`` is
    True when the interval excludes 0."""
    from scipy import stats
    diffs = np.asarray(values, float) - np.asarray(baseline, float)
    if diffs.ndim != 1 or len(diffs) == 0:
        raise ValueError('paired_difference needs two equal-length, non-empty sequences')
    n = len(diffs)
    mean = float(diffs.mean())
    std = float(diffs.std(ddof=1)) if n > 1 else None
    low = high = None
    if n > 1:
        if method == 't':
            if std == 0:
                low = high = mean
            else:
                low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=std / np.sqrt(n))
        elif method == 'bootstrap':
            res = stats.bootstrap((diffs,), np.mean, confidence_level=confidence, method='BCa',
                                  n_resamples=9999, random_state=np.random.default_rng(seed))
            low, high = res.confidence_interval
        else:
            raise ValueError(f'method must be t or bootstrap, not {method!r}')
        low, high = float(low), float(high)
    resolved = low is not None and (low > 0 or high < 0)
    return {'mean': mean, 'std': std, 'low': low, 'high': high, 'n': n,
            'per_seed': [float(d) for d in diffs], 'resolved': bool(resolved)}


def slope_interval(x, y, confidence=0.95):
    """Least-squares line y = a + b x -> {slope, low, high, intercept, r, n}
    with the slope's two-sided t interval (n - 2 degrees of freedom)."""
    from scipy import stats
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        raise ValueError('a slope with an interval needs at least 3 points')
    fit = stats.linregress(x, y)
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 2) * fit.stderr)
    return {'slope': float(fit.slope), 'low': float(fit.slope) - half, 'high': float(fit.slope) + half,
            'intercept': float(fit.intercept), 'r': float(fit.rvalue), 'n': int(len(x))}


def fmt_difference(d, digits=3):
    """'+0.031 ± 0.019 [+0.008, +0.054]' (mean ± std [95 % interval])."""
    if d['std'] is None:
        return f"{d['mean']:+.{digits}f} (one seed)"
    return (f"{d['mean']:+.{digits}f} ± {d['std']:.{digits}f} "
            f"[{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]")


def collect_runs(metrics, baseline):
    """{row: mean, std, runs, and its paired difference to ``baseline``} from
    {(row, seed): metrics.json path}."""
    runs = {}
    for (key, seed), path in sorted(metrics.items(), key=lambda kv: kv[0][1]):
        with open(path) as f:
            runs.setdefault(key, []).append(dict(json.load(f), seed=seed))
    out = {key: {'miou_mean': float(np.mean([r['miou'] for r in rs])),
                 'miou_std': float(np.std([r['miou'] for r in rs], ddof=1)) if len(rs) > 1 else 0.0,
                 'runs': rs} for key, rs in runs.items()}
    if baseline in out:
        base = {r['seed']: r['miou'] for r in out[baseline]['runs']}
        for key, row in out.items():
            if key != baseline:
                seeds = [r['seed'] for r in row['runs'] if r['seed'] in base]
                row['paired'] = paired_difference(
                    [r['miou'] for r in row['runs'] if r['seed'] in base], [base[s] for s in seeds])
    return out


def pair_rows(finetune, pairs):
    """[{rows: [x, y], and x - y paired by seed}] for each pair of rows of
    ``finetune`` (:func:`collect_runs`); pairs with a missing row are left out."""
    out = []
    for x, y in pairs:
        if x not in finetune or y not in finetune:
            continue
        ys = {r['seed']: r['miou'] for r in finetune[y]['runs']}
        xs = [r for r in finetune[x]['runs'] if r['seed'] in ys]
        if xs:
            out.append(dict(paired_difference([r['miou'] for r in xs], [ys[r['seed']] for r in xs]),
                            rows=[x, y]))
    return out
