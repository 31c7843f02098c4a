"""The simulation behind calibration::PRIOR_WEIGHT (docs/design.md §5.6).

A binary model whose logit m ~ U(0, 3) is right with probability sigmoid(m) reports the
probabilities of s * m (s = 0.7 under-confident, 1 calibrated, 1.5 / 2 / 4 over-confident). A
temperature is chosen on n held-out rows (20: a 200-row task's held-out tenth; 50) by each rule,
and scored by ECE (10 bins) and NLL on 3000 fresh rows, 150 replicates per case. The fit mirrors
train::calibration::fit_temperature: golden-section search over beta = 1 / T in [0.01, 100] of
n * NLL(T) + w * (beta - 1)^2. "checked" keeps the fit only where, fitted on one half of the rows
(even / odd positions) and applied to the other, it lowers their NLL (the rule before).

Run: python3 python/calibration_sim.py   (numpy; e.g. the venv of scripts/interop)
What it leaves out: multi-class models, and any model of how a real task's miscalibration is
distributed (the five cases are averaged with equal weight).
"""
import numpy as np


def rows(rng, n, sharpen):
    m = rng.uniform(0, 3, n)
    y = np.arange(n) % 2
    right = rng.random(n) < 1 / (1 + np.exp(-m))
    z = np.zeros((n, 2))
    z[np.arange(n), np.where(right, y, 1 - y)] = sharpen * m
    return z - np.logaddexp(z[:, 0], z[:, 1])[:, None], y


def row_nll(logp, y, t):
    z = logp / t
    return -(z - np.logaddexp(z[:, 0], z[:, 1])[:, None])[np.arange(len(y)), y]


def fit(logp, y, w):
    f = lambda b: len(y) * row_nll(logp, y, 1 / b).mean() + w * (b - 1) ** 2
    a, b, g = 0.01, 100.0, (5**0.5 - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(100):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return 2 / (a + b)


def checked(logp, y, w):
    even = np.arange(len(y)) % 2 == 0
    out = np.empty(len(y))
    out[even] = row_nll(logp[even], y[even], fit(logp[~even], y[~even], w))
    out[~even] = row_nll(logp[~even], y[~even], fit(logp[even], y[even], w))
    return fit(logp, y, w) if out.mean() < row_nll(logp, y, 1.0).mean() else 1.0


def ece(logp, y, t):
    z = logp / t
    p = np.exp(z - np.logaddexp(z[:, 0], z[:, 1])[:, None])
    conf, acc = p.max(1), p.argmax(1) == y
    b = np.minimum((conf * 10).astype(int), 9)
    return sum((b == i).mean() * abs(conf[b == i].mean() - acc[b == i].mean()) for i in range(10) if (b == i).any())


RULES = [("T = 1", lambda lp, y: 1.0)] + [
    (f"fit, weight {w}", lambda lp, y, w=w: fit(lp, y, w)) for w in (0.5, 2, 5, 10)
] + [(f"checked, weight {w}", lambda lp, y, w=w: checked(lp, y, w)) for w in (0.5, 5)]

for n in (20, 50):
    print(f"held-out rows: {n}")
    means = {name: [] for name, _ in RULES}
    for sharpen in (0.7, 1.0, 1.5, 2.0, 4.0):
        for name, rule in RULES:
            rng = np.random.default_rng(11)
            e = []
            for _ in range(150):
                t = rule(*rows(rng, n, sharpen))
                e.append(ece(*rows(rng, 3000, sharpen), t))
            means[name].append(np.mean(e))
    for name, v in means.items():
        print(f"  {name:22s} " + " ".join(f"{x:.3f}" for x in v) + f"   mean {np.mean(v):.3f}")
