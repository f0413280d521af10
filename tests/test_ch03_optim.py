"""Optimizers and schedules against torch.optim: 20 steps on the same problem.

Each test trains the same small network (weights copied through state_dict) with tinytorch and
with PyTorch, both computing their own gradients, and compares every parameter after every
step (float64, 1e-10 relative: the update formulas must be PyTorch's, not only equivalent) and
the learning rate of every group.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch import nn, optim
from tinytorch.optim import lr_scheduler

pytestmark = pytest.mark.ch03

RTOL = 1e-10  # float64: the two runs may differ only by rounding


def _pair(device="cpu"):
    """A tinytorch MLP and its PyTorch twin with the same float64 weights, and a batch."""
    ours = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(np.float64)
    ref = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    ref = ref.double()
    ref.load_state_dict(
        {k: torch.from_numpy(to_numpy(v).copy()) for k, v in ours.state_dict().items()}
    )
    ours.to(device)
    x, y = np.random.randn(16, 5), np.random.randn(16, 3)
    return ours, ref, (x, y)


def _groups(model, lib_groups, grouped):
    """All parameters in one group, or weights and biases in two groups with their own
    hyperparameters (the GPT recipe: no decay on biases)."""
    if not grouped:
        return model.parameters()
    named = list(model.named_parameters())
    w = [p for n, p in named if n.endswith("weight")]
    b = [p for n, p in named if n.endswith("bias")]
    return [{"params": w, **lib_groups[0]}, {"params": b, **lib_groups[1]}]


def _run(make_opt, make_sched=None, steps=20, grouped=False, groups=({}, {}), device="cpu"):
    ours, ref, (x, y) = _pair(device)
    opt = make_opt(optim, _groups(ours, groups, grouped))
    ropt = make_opt(torch.optim, _groups(ref, groups, grouped))
    sched = make_sched(lr_scheduler, opt) if make_sched else None
    rsched = make_sched(torch.optim.lr_scheduler, ropt) if make_sched else None
    xt, yt = tt.tensor(x, device=device), tt.tensor(y, device=device)
    xr, yr = torch.from_numpy(x), torch.from_numpy(y)
    for step in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(ours(xt), yt).backward()
        opt.step()
        ropt.zero_grad()
        torch.nn.functional.mse_loss(ref(xr), yr).backward()
        ropt.step()
        if sched:
            sched.step()
            rsched.step()
            np.testing.assert_allclose(
                sched.get_last_lr(),
                rsched.get_last_lr(),
                rtol=1e-13,
                err_msg=f"lr after step {step}",
            )
        for (name, p), rp in zip(ours.named_parameters(), ref.parameters()):
            assert_close(p, rp, rtol=RTOL, atol=1e-14, msg=f"{name} after step {step + 1}")
    for g, rg in zip(opt.param_groups, ropt.param_groups):
        assert g["lr"] == pytest.approx(rg["lr"], rel=1e-13)
    return opt, ropt


SGD_CASES = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.05, momentum=0.9),
    "dampening": dict(lr=0.05, momentum=0.9, dampening=0.3),
    "nesterov": dict(lr=0.05, momentum=0.8, nesterov=True),
    "weight_decay": dict(lr=0.05, momentum=0.9, weight_decay=0.1),
    "maximize": dict(lr=0.01, momentum=0.5, maximize=True),
}


@pytest.mark.exercise("sgd")
@pytest.mark.parametrize("case", SGD_CASES)
def test_sgd_matches_torch(case, device):
    kw = SGD_CASES[case]
    opt, ropt = _run(lambda lib, params: lib.SGD(params, **kw), device=device)
    if kw.get("momentum"):  # the buffer has PyTorch's name and value
        for p, rp in zip(opt.param_groups[0]["params"], ropt.param_groups[0]["params"]):
            assert set(opt.state[p]) == set(ropt.state[rp]) == {"momentum_buffer"}
            assert_close(opt.state[p]["momentum_buffer"], ropt.state[rp]["momentum_buffer"])


ADAM_CASES = {
    "Adam": ("Adam", dict(lr=0.01)),
    "Adam-l2": ("Adam", dict(lr=0.01, weight_decay=0.1, betas=(0.8, 0.99))),
    "Adam-amsgrad": ("Adam", dict(lr=0.01, amsgrad=True)),
    "AdamW": ("AdamW", dict(lr=0.01)),
    "AdamW-decay": ("AdamW", dict(lr=0.02, weight_decay=0.3, eps=1e-6)),
    "AdamW-amsgrad-max": ("AdamW", dict(lr=0.01, amsgrad=True, maximize=True)),
}


@pytest.mark.exercise("adam")
@pytest.mark.parametrize("case", ADAM_CASES)
def test_adam_matches_torch(case, device):
    name, kw = ADAM_CASES[case]
    opt, ropt = _run(lambda lib, params: getattr(lib, name)(params, **kw), device=device)
    # the state has PyTorch's keys, step count and values
    for p, rp in zip(opt.param_groups[0]["params"], ropt.param_groups[0]["params"]):
        s, rs = opt.state[p], ropt.state[rp]
        assert set(s) == set(rs)
        assert s["step"] == int(rs["step"].item()) == 20
        assert_close(s["exp_avg_sq"], rs["exp_avg_sq"], rtol=1e-9, atol=1e-16)


def test_parameter_groups_with_their_own_hyperparameters():
    groups = ({"lr": 0.02, "weight_decay": 0.2}, {"lr": 0.005, "weight_decay": 0.0})
    _run(
        lambda lib, params: lib.AdamW(params, lr=0.01, betas=(0.9, 0.95)),
        grouped=True,
        groups=groups,
    )
    groups = ({"momentum": 0.9, "nesterov": True}, {"lr": 0.3, "dampening": 0.2})
    _run(lambda lib, params: lib.SGD(params, lr=0.1, momentum=0.5), grouped=True, groups=groups)


SCHEDULES = {
    "LambdaLR": lambda lib, o: lib.LambdaLR(o, lambda s: 0.95**s),
    "StepLR": lambda lib, o: lib.StepLR(o, step_size=4, gamma=0.5),
    "LinearLR": lambda lib, o: lib.LinearLR(o, start_factor=0.1, total_iters=7),
    "LinearLR-decay": lambda lib, o: lib.LinearLR(
        o, start_factor=1.0, end_factor=0.2, total_iters=12
    ),
    "CosineAnnealingLR": lambda lib, o: lib.CosineAnnealingLR(o, T_max=8, eta_min=1e-4),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_scheduler_matches_torch(name):
    groups = ({"lr": 0.05}, {"lr": 0.01})
    _run(
        lambda lib, params: lib.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01),
        SCHEDULES[name],
        steps=20,
        grouped=True,
        groups=groups,
    )


def test_warmup_cosine_is_nanogpts_schedule():
    # nanoGPT train.py's get_lr, verbatim apart from the names
    lr, min_lr, warmup, decay_iters = 6e-4, 6e-5, 5, 30

    def get_lr(it):
        if it < warmup:
            return lr * (it + 1) / (warmup + 1)
        if it > decay_iters:
            return min_lr
        decay_ratio = (it - warmup) / (decay_iters - warmup)
        coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
        return min_lr + coeff * (lr - min_lr)

    p = nn.Parameter(tt.zeros(3))
    opt = optim.AdamW([p], lr=lr)
    sched = lr_scheduler.WarmupCosineLR(
        opt, warmup_steps=warmup, max_steps=decay_iters, min_ratio=min_lr / lr
    )
    seen = []
    for _ in range(40):
        seen.append(opt.param_groups[0]["lr"])
        p.grad = tt.ones(3)
        opt.step()
        sched.step()
    np.testing.assert_allclose(seen, [get_lr(i) for i in range(40)], rtol=1e-12)


def test_state_dict_moves_between_tinytorch_and_torch():
    """Train 8 steps in tinytorch, continue in PyTorch from our state (and vice versa): the
    result equals 16 uninterrupted steps."""
    ours, ref, (x, y) = _pair()
    opt = optim.AdamW(ours.parameters(), lr=0.01, weight_decay=0.1, amsgrad=True)
    ropt = torch.optim.AdamW(ref.parameters(), lr=0.01, weight_decay=0.1, amsgrad=True)
    xt, yt, xr, yr = tt.tensor(x), tt.tensor(y), torch.from_numpy(x), torch.from_numpy(y)

    def ours_step():
        opt.zero_grad()
        nn.functional.mse_loss(ours(xt), yt).backward()
        opt.step()

    def ref_step():
        ropt.zero_grad()
        torch.nn.functional.mse_loss(ref(xr), yr).backward()
        ropt.step()

    for _ in range(8):
        ours_step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert sd["param_groups"][0]["params"] == [0, 1, 2, 3]
    torch_sd = ropt.state_dict()
    assert set(sd["state"][0]) == set(torch_sd["state"].get(0, sd["state"][0]))
    # ours -> torch: weights by Module.state_dict, optimizer state as torch tensors
    ref.load_state_dict(
        {k: torch.from_numpy(to_numpy(v).copy()) for k, v in ours.state_dict().items()}
    )
    ropt.load_state_dict(
        {
            "state": {
                i: {
                    k: (
                        torch.tensor(float(v))
                        if k == "step"
                        else torch.from_numpy(to_numpy(v).copy())
                    )
                    for k, v in s.items()
                }
                for i, s in sd["state"].items()
            },
            "param_groups": sd["param_groups"],
        }
    )
    for _ in range(8):
        ours_step()
        ref_step()
    for p, rp in zip(ours.parameters(), ref.parameters()):
        assert_close(p, rp, rtol=RTOL, atol=1e-14)
    # torch -> ours: load torch's state (torch tensors) into a fresh optimizer
    opt2 = optim.AdamW(ours.parameters(), lr=123.0)
    opt2.load_state_dict(ropt.state_dict())
    assert opt2.param_groups[0]["lr"] == 0.01 and opt2.param_groups[0]["amsgrad"]
    opt = opt2
    for _ in range(4):
        ours_step()
        ref_step()
    for p, rp in zip(ours.parameters(), ref.parameters()):
        assert_close(p, rp, rtol=RTOL, atol=1e-14)


def test_load_state_dict_rejects_mismatched_groups():
    a, b = nn.Parameter(tt.zeros(2)), nn.Parameter(tt.zeros(3))
    opt = optim.SGD([a, b], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="parameter groups"):
        opt.load_state_dict(
            {"state": {}, "param_groups": [{"lr": 1, "params": [0]}, {"lr": 1, "params": [1]}]}
        )
    with pytest.raises(ValueError, match="group 0 has 1 parameters"):
        opt.load_state_dict({"state": {}, "param_groups": [{"lr": 1, "params": [0]}]})
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(
            {
                "state": {1: {"momentum_buffer": np.zeros(5)}},
                "param_groups": [{"lr": 1, "params": [0, 1]}],
            }
        )


def test_zero_grad_and_bad_arguments():
    p = nn.Parameter(tt.randn(3))
    opt = optim.SGD([p], lr=0.1)
    p.grad = tt.ones(3)
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and not p.grad.numpy().any()
    opt.zero_grad()
    assert p.grad is None
    opt.step()  # parameters without gradients are skipped
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta"):
        optim.Adam([p], betas=(0.9, 1.0))


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_clip_grad_norm_matches_torch(norm_type, device):
    shapes = [(4, 3), (3,), (2, 2, 2)]
    grads = [np.random.randn(*s) * 3 for s in shapes]
    ours = [nn.Parameter(tt.zeros(*s, dtype=tt.float64, device=device)) for s in shapes]
    ref = [torch.zeros(*s, dtype=torch.float64, requires_grad=True) for s in shapes]
    for p, rp, g in zip(ours, ref, grads):
        p.grad = tt.tensor(g, device=device)
        rp.grad = torch.from_numpy(g.copy())
    max_norm = 0.5 * float(
        np.linalg.norm(np.concatenate([g.ravel() for g in grads]), ord=norm_type)
    )
    total = nn.utils.clip_grad_norm_(ours, max_norm, norm_type)
    rtotal = torch.nn.utils.clip_grad_norm_(ref, max_norm, norm_type)
    assert_close(total, rtotal)
    for p, rp in zip(ours, ref):
        assert_close(p.grad, rp.grad)
    # below the bound nothing changes (the factor is clamped at 1)
    before = [p.grad.numpy().copy() for p in ours]
    nn.utils.clip_grad_norm_(ours, 1e6, norm_type)
    for b, p in zip(before, ours):
        assert_close(p.grad, b, rtol=1e-12)


def test_clip_grad_value_matches_torch():
    g = np.random.randn(5, 4) * 2
    p, rp = nn.Parameter(tt.zeros(5, 4)), torch.zeros(5, 4, requires_grad=True)
    p.grad, rp.grad = tt.tensor(g, dtype=tt.float32), torch.from_numpy(g.astype(np.float32))
    nn.utils.clip_grad_value_([p], 0.7)
    torch.nn.utils.clip_grad_value_([rp], 0.7)
    assert_close(p.grad, rp.grad)
