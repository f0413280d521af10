"""Truncated backpropagation through time: carry a recurrent model's state across windows.

    loader = TBPTTLoader(ids, batch_size=32, seq_len=64)       # tinytorch.data.windows
    loss_fn = TBPTTLoss()
    train(model, optimizer, loader, steps, loss_fn=loss_fn, val_data=val_loader, ...)

A stateful sequence model, `model(x, state) -> (logits (B, T, V), state)`, reads window k+1
starting from its state at the end of window k, so it sees context older than T. Before it is
used, the state is detached: backward stops at the window's start, so it never runs further
back than T steps (that is the "truncated"). TBPTTLoss is that rule as a loss_fn for
`tinytorch.train.train_step` / `train` / `evaluate`: it keeps the state between calls (one for
training, one for evaluation, chosen by model.training) and starts from None (zeros) on the
first window of every pass.
"""

from __future__ import annotations

from ..nn import functional as F

__all__ = ["detach_state", "TBPTTLoss"]


def detach_state(state):
    """Truncated BPTT: keep the state's values, cut the graph behind them (None stays None).
    state: a Tensor h, or a tuple (h, c) for the LSTM; returns the same structure."""
    if state is None:
        return None
    # BEGIN EXERCISE ch04: detach_state - the state (a tensor, or a tuple (h, c)) detached
    if isinstance(state, tuple | list):
        return tuple(s.detach() for s in state)
    return state.detach()
    # END EXERCISE


class TBPTTLoss:
    """loss_fn(model, (x, y, first)) -> the mean cross-entropy of model(x, state) against y.

    state is None when `first`, else the detached state this loss kept from its previous call
    in the same mode (model.training); the new state is kept for the next call.
    """

    def __init__(self):
        self.state = {True: None, False: None}  # keyed by model.training

    def __call__(self, model, batch):
        x, y, first = batch
        mode = model.training
        # BEGIN EXERCISE ch04: tbptt_loss - model(x, None if first else the kept state detached)
        state = None if first else detach_state(self.state[mode])
        logits, self.state[mode] = model(x, state)
        # END EXERCISE
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
