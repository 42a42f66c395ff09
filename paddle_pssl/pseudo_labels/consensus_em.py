"""Reliability-weighted consensus without ground truth.

Notation: member j = 1..M gives vote d_ij in [0, 1] at pixel i (binary for
STAPLE: the member's map cut by a threshold rule; the map itself for the soft
variant). The hidden truth T_i is 1 (object) or 0.

STAPLE-style EM (Warfield, Zou, Wells, IEEE TMI 2004), per image. Parameters:
each member's sensitivity p_j = P(d=1 | T=1), specificity q_j = P(d=0 | T=0)
and the object prior f = P(T=1).
  E-step   log a_i = log f     + sum_j d_ij log p_j       + (1 - d_ij) log(1 - p_j)
           log b_i = log(1 - f) + sum_j d_ij log(1 - q_j) + (1 - d_ij) log q_j
           W_i = a_i / (a_i + b_i)                          (posterior P(T_i = 1))
  M-step   p_j = sum_i W_i d_ij / sum_i W_i
           q_j = sum_i (1 - W_i)(1 - d_ij) / sum_i (1 - W_i)
           f   = mean_i W_i
Start: W = the plain mean of the votes (so the members' majority fixes which
side is 'object'); p, q clipped to [1e-4, 1 - 1e-4] so one perfect member
cannot give log 0. Stop when W moves less than 1e-5 or after 50 rounds. With
soft votes the same formulas are the expected log-likelihood of a vote that
is 1 with probability d_ij. An unreliable member gets p_j + q_j near 1: its
log-likelihood ratio, i.e. its weight in W, is near 0.

Leave-one-out agreement: w_j = max(0, corr(s_j, mean_{k != j} s_k)), Pearson
correlation over the image's pixels; the consensus is sum_j w_j s_j / sum_j w_j
(the plain mean when every w_j is 0).
"""
import numpy as np

CLIP = 1e-4
MAX_ROUNDS = 50
TOLERANCE = 1e-5


def staple(votes, max_rounds=MAX_ROUNDS, tol=TOLERANCE):
    """EM over ``votes`` [M, H, W] (0/1 or soft in [0, 1]).

    -> (posterior W [H, W] float32, sensitivity p [M], specificity q [M], prior f)."""
    d = np.asarray(votes, np.float64).reshape(len(votes), -1)
    w = d.mean(axis=0)
    p = q = None
    f = float(w.mean())
    for _ in range(max_rounds):
        p = np.clip((d @ w) / max(w.sum(), 1e-12), CLIP, 1 - CLIP)
        q = np.clip(((1 - d) @ (1 - w)) / max((1 - w).sum(), 1e-12), CLIP, 1 - CLIP)
        f = float(np.clip(w.mean(), CLIP, 1 - CLIP))
        # log a - log b, as one linear function of the votes
        slope = np.log(p) - np.log(1 - p) - np.log(1 - q) + np.log(q)
        offset = np.log(f) - np.log(1 - f) + np.sum(np.log(1 - p) - np.log(q))
        logit = offset + slope @ d
        new = 1.0 / (1.0 + np.exp(-np.clip(logit, -60, 60)))
        done = float(np.abs(new - w).max()) < tol
        w = new
        if done:
            break
    return w.reshape(np.shape(votes)[1:]).astype(np.float32), p, q, f


def loo_weights(stack):
    """Each map's Pearson correlation with the mean of the others, floored at 0."""
    s = np.asarray(stack, np.float64).reshape(len(stack), -1)
    m = len(s)
    if m < 2:
        return np.ones(m)
    others = (s.sum(axis=0)[None] - s) / (m - 1)
    weights = np.zeros(m)
    for j in range(m):
        a, b = s[j] - s[j].mean(), others[j] - others[j].mean()
        norm = float(np.sqrt((a @ a) * (b @ b)))
        # a flat map carries no ranking of pixels: weight 0
        weights[j] = max(0.0, float(a @ b) / norm) if norm > 0 else 0.0
    return weights
