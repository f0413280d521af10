"""Chapter 01's data: interleaved spiral arms in the plane, and the MLP's parameters.

The arms turn 1.25 times around the origin inside the unit disc, so no straight line (and no
small network) separates them: the classifier has to learn a boundary that winds with them.
"""

from __future__ import annotations

import numpy as np

import tinytorch as tt


def spirals(n_per_class: int, classes: int, rng, turns: float = 1.25, noise: float = 0.15):
    """`classes` spiral arms: (N, 2) float64 points and (N,) int64 labels, N = n * classes.

    Arm c starts at angle 2 pi c / classes and turns `turns` times while its radius grows from
    0.1 to 1; each angle is jittered by N(0, noise) radians (the arms are 2 pi / classes apart,
    so they never overlap: the task can be learned perfectly, but not by a small model).
    """
    xs, ys = [], []
    for c in range(classes):
        r = np.linspace(0.1, 1.0, n_per_class)
        start = c * 2 * np.pi / classes
        theta = start + np.linspace(0, 2 * np.pi * turns, n_per_class)
        theta = theta + rng.normal(0, noise, n_per_class)
        xs.append(np.stack([r * np.cos(theta), r * np.sin(theta)], 1))
        ys.append(np.full(n_per_class, c))
    return np.concatenate(xs), np.concatenate(ys)


def init_params(hidden: int, classes: int, init_scale: float = 4.0, dtype=tt.float32):
    """W1 (2, H), b1 (H,), W2 (H, C), b2 (C,): leaves that require grad.

    W2 is scaled by 1/sqrt(H), so the logits start small. W1 is scaled by init_scale/sqrt(2):
    the points lie in the unit disc and the arms wind 1.25 times, so the first layer needs
    tanh units whose transitions are sharp (weights of a few units); starting from the usual
    1/sqrt(fan_in) (init_scale=1), gradient descent spends thousands of steps growing them.
    """
    w1 = tt.randn(2, hidden, dtype=dtype) * (init_scale / np.sqrt(2))
    w2 = tt.randn(hidden, classes, dtype=dtype) * (1 / np.sqrt(hidden))
    params = [w1, tt.zeros(hidden, dtype=dtype), w2, tt.zeros(classes, dtype=dtype)]
    return [p.detach().requires_grad_() for p in params]
