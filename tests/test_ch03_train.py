"""tinytorch.train: the loop does exactly what a hand-written PyTorch loop does.

The same MLP (weights copied), the same batches in the same order, SGD with momentum and a
StepLR schedule: the per-step losses, learning rates and final weights must equal PyTorch's
(float64). Validation runs in eval mode, without touching gradients, every K steps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch import data, nn, optim
from tinytorch.train import evaluate, lm_loss, train, train_step

pytestmark = pytest.mark.ch03


def _models():
    ours = nn.Sequential(nn.Embedding(7, 4), nn.Identity(), nn.Linear(4, 7)).to(tt.float64)
    ref = torch.nn.Sequential(
        torch.nn.Embedding(7, 4), torch.nn.Identity(), torch.nn.Linear(4, 7)
    ).double()
    ref.load_state_dict(
        {k: torch.from_numpy(to_numpy(v).copy()) for k, v in ours.state_dict().items()}
    )
    return ours, ref


def test_train_equals_a_handwritten_torch_loop():
    n, steps, bs = 37, 23, 8  # 5 batches per epoch, the last one partial: epochs wrap
    x, y = np.random.randint(0, 7, n), np.random.randint(0, 7, n)
    ours, ref = _models()
    opt = optim.SGD(ours.parameters(), lr=0.3, momentum=0.9, weight_decay=1e-3)
    sched = optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    loader = data.DataLoader(data.TensorDataset(tt.tensor(x), tt.tensor(y)), batch_size=bs)
    hist = train(ours, opt, loader, steps, scheduler=sched)

    ropt = torch.optim.SGD(ref.parameters(), lr=0.3, momentum=0.9, weight_decay=1e-3)
    rsched = torch.optim.lr_scheduler.StepLR(ropt, step_size=5, gamma=0.5)
    losses, lrs = [], []
    for step in range(steps):
        start = (step % 5) * bs
        xb, yb = torch.tensor(x[start : start + bs]), torch.tensor(y[start : start + bs])
        lrs.append(ropt.param_groups[0]["lr"])
        ropt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ref(xb), yb)
        loss.backward()
        ropt.step()
        rsched.step()
        losses.append(loss.item())
    assert hist.steps == list(range(1, steps + 1))
    np.testing.assert_allclose(hist.train_loss, losses, rtol=1e-10)
    np.testing.assert_allclose(hist.lr, lrs, rtol=1e-13)
    for (name, p), rp in zip(ours.named_parameters(), ref.parameters()):
        assert_close(p, rp, rtol=1e-10, atol=1e-13, msg=name)
    assert hist.val_steps == [] and hist.seconds > 0


def test_validation_every_k_steps_in_eval_mode():
    model = nn.Sequential(nn.Linear(3, 16), nn.Dropout(0.5), nn.Linear(16, 2))
    xs, ys = tt.randn(64, 3), tt.randint(0, 2, (64,))
    val = data.DataLoader(
        data.TensorDataset(tt.randn(30, 3), tt.randint(0, 2, (30,))), batch_size=8
    )

    calls = []

    def get_batch():  # nanoGPT-style batch function
        calls.append(1)
        idx = tt.randint(0, 64, (16,))
        return xs[idx], ys[idx]

    lines = []
    hist = train(
        model,
        optim.Adam(model.parameters(), lr=1e-2),
        get_batch,
        25,
        val_data=val,
        eval_every=10,
        log_every=10,
        print_fn=lines.append,
    )
    assert len(calls) == 25
    assert hist.val_steps == [10, 20, 25] and len(hist.val_loss) == 3
    assert len(lines) == 3 and "val" in lines[-1]
    assert model.training  # restored after evaluation
    # evaluation is deterministic (dropout off), weighted by batch size, and leaves grads alone
    grads = [None if p.grad is None else to_numpy(p.grad).copy() for p in model.parameters()]
    full = evaluate(model, [val.dataset.tensors])  # one batch with all 30 examples
    assert evaluate(model, val) == pytest.approx(full, rel=1e-6)
    assert evaluate(model, val) == evaluate(model, val)
    for g, p in zip(grads, model.parameters()):
        assert_close(p.grad, g)
    assert hist.val_loss[-1] == pytest.approx(full, rel=1e-6)


def test_lm_loss_flattens_sequences_and_bad_losses_stop_training():
    model = nn.Embedding(5, 5)
    x, y = tt.randint(0, 5, (2, 3)), tt.randint(0, 5, (2, 3))
    logits = model(x)
    ref = torch.nn.functional.cross_entropy(
        torch.tensor(to_numpy(logits.detach())).reshape(6, 5), torch.tensor(to_numpy(y)).reshape(6)
    )
    assert float(lm_loss(model, (x, y)).item()) == pytest.approx(ref.item(), rel=1e-5)
    with pytest.raises(FloatingPointError, match="step 1"):
        train(
            model,
            optim.SGD(model.parameters(), lr=1.0),
            [(x, y)],
            3,
            loss_fn=lambda m, b: m(b[0]).sum() * float("nan"),
        )
    with pytest.raises(ValueError, match="no batch"):
        train(model, optim.SGD(model.parameters()), [], 3)


@pytest.mark.exercise("train_step")
@pytest.mark.parametrize("clip", [None, 0.05])
def test_train_step_is_one_torch_step(clip):
    """zero_grad, loss, backward, (clip_grad_norm_), step: stale gradients must not leak in."""
    ours, ref = _models()
    opt = optim.SGD(ours.parameters(), lr=0.5, momentum=0.9)
    ropt = torch.optim.SGD(ref.parameters(), lr=0.5, momentum=0.9)
    for p in ours.parameters():  # garbage left from an earlier backward: must be zeroed
        p.grad = tt.ones(*p.shape, dtype=tt.float64)
    for _ in range(3):
        x, y = np.random.randint(0, 7, 6), np.random.randint(0, 7, 6)
        loss = train_step(ours, opt, (tt.tensor(x), tt.tensor(y)), clip_grad_norm=clip)
        ropt.zero_grad()
        rloss = torch.nn.functional.cross_entropy(ref(torch.tensor(x)), torch.tensor(y))
        rloss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
        ropt.step()
        assert isinstance(loss, float) and loss == pytest.approx(rloss.item(), rel=1e-10)
        for (name, p), rp in zip(ours.named_parameters(), ref.parameters()):
            assert_close(p, rp, rtol=1e-10, atol=1e-13, msg=name)
