"""Chapter 04's helpers around the character model: the clipping that records what it saw,
and the gradient-through-time measurement and its plot.

The model itself is `tinytorch.models.char_rnn.CharRNN`; the windows and the state carried
between them are the library's (`tinytorch.data.windows`, `tinytorch.train.tbptt`).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from tinytorch.data.windows import spread_windows
from tinytorch.nn.utils import clip_grad_norm_


class ClipAndRecord:
    """An optimizer with gradient-norm clipping in front of its step, which also records the
    total norm clipping saw (before clipping) at every step: the loss figure's right panel.

    `train_step(model, ClipAndRecord(opt, params, 1.0), batch)` clips exactly as
    `train_step(model, opt, batch, clip_grad_norm=1.0)` does (after backward, before the
    update); max_norm 0 or None measures without clipping."""

    def __init__(self, optimizer, parameters, max_norm):
        self.optimizer, self.params = optimizer, list(parameters)
        self.max_norm = max_norm or math.inf  # inf: the scale factor is exactly 1
        self.norms = []

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def zero_grad(self):
        self.optimizer.zero_grad()

    def step(self):
        self.norms.append(float(clip_grad_norm_(self.params, self.max_norm).item()))
        self.optimizer.step()


def grad_norm_curves(models: dict, val_ids, length: int, batch: int = 16):
    """||dL_T/dh_t|| (top layer) for each model on the same `batch` validation windows of
    `length` characters, spread evenly over the validation text."""
    x, y = spread_windows(val_ids, batch, length)
    return {name: m.hidden_grad_norms(x, y)[-1] for name, m in models.items()}


def plot_grad_norms(ax, curves, title):
    """One curve per model: the norm against how many steps back from the loss t is."""
    for name, norms in curves.items():
        ax.semilogy(np.arange(len(norms))[::-1], norms, label=name)  # t = T-1 is 0 steps back
    ax.set_xlabel("steps back from the loss (T-1-t)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
