"""Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019).

Adam keeps, per parameter, running averages of the gradient (m) and of its square (v):

    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g^2
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

The two `1 - beta^t` factors undo the bias of averages that start at zero. The difference
between the two optimizers is weight decay: Adam adds `weight_decay * p` to g (an L2 penalty,
which the adaptive denominator then weakens for parameters with large gradients); AdamW
shrinks p directly, `p = p * (1 - lr * weight_decay)`, before the update ("decoupled"), the
decay GPT-style recipes use. As in torch 2.x, AdamW is Adam with decoupled_weight_decay=True.
"""

from __future__ import annotations

from .. import backend
from ..kernels import foreach
from ..tensor import Tensor
from .optimizer import Optimizer, check_non_negative


def adam_update(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    max_exp_avg_sq=None,
) -> None:
    """One Adam update of the raw array `param` in place (moments updated in place too).

    step is t, counted from 1. max_exp_avg_sq is given with amsgrad=True (the optimizer keeps
    it as state["max_exp_avg_sq"], PyTorch's name): update it in place to the elementwise
    maximum of itself and the new exp_avg_sq, and use it instead of exp_avg_sq in the
    denominator, so the step size never grows back (Reddi et al., 2018)."""
    xp = backend.xp_of(param)
    # BEGIN EXERCISE ch03: adam - moments in place, bias corrections, AMSGrad max_exp_avg_sq
    exp_avg *= beta1
    exp_avg += (1 - beta1) * grad
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    second = exp_avg_sq
    if max_exp_avg_sq is not None:  # AMSGrad: never let the denominator shrink
        xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    denom = xp.sqrt(second) / bias_correction2**0.5 + eps
    param -= (lr / bias_correction1) * (exp_avg / denom)
    # END EXERCISE


class Adam(Optimizer):
    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ):
        check_non_negative(lr=lr, eps=eps, weight_decay=weight_decay)
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {b} (need 0 <= beta < 1)")
        super().__init__(
            params,
            dict(
                lr=lr,
                betas=tuple(betas),
                eps=eps,
                weight_decay=weight_decay,
                amsgrad=amsgrad,
                maximize=maximize,
                decoupled_weight_decay=decoupled_weight_decay,
            ),
        )

    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params and not self._fused_step(group, params):
                for p in params:
                    self._step_one(group, p)
        return loss

    def _state(self, group, p):
        state = self.state.get(p)
        if not state:
            xp = p.xp
            state = self.state[p] = {
                "step": 0,
                "exp_avg": Tensor._wrap(xp.zeros_like(p.data)),
                "exp_avg_sq": Tensor._wrap(xp.zeros_like(p.data)),
            }
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = Tensor._wrap(xp.zeros_like(p.data))
        return state

    def _fused_step(self, group, params) -> bool:
        """The whole group in one multi-tensor kernel call (chapter 12, kernels/foreach.cpp):
        float32 CPU parameters, when the kernels are on. Same result as _step_one for each
        parameter, bit for bit. False = not taken (the caller runs _step_one)."""
        datas, grads = [p.data for p in params], [p.grad.data for p in params]
        if not foreach.supports(datas, grads):
            return False
        states = [self._state(group, p) for p in params]
        for state in states:
            state["step"] += 1
        ams = group["amsgrad"]
        foreach.adam_step(
            datas,
            grads,
            [s["exp_avg"].data for s in states],
            [s["exp_avg_sq"].data for s in states],
            [s["max_exp_avg_sq"].data for s in states] if ams else None,
            [s["step"] for s in states],
            group["lr"],
            *group["betas"],
            group["eps"],
            group["weight_decay"],
            group["decoupled_weight_decay"],
            group["maximize"],
        )
        return True

    def _step_one(self, group, p):
        """The composed update of one parameter: weight decay, then adam_update."""
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        wd, decoupled = group["weight_decay"], group["decoupled_weight_decay"]
        g = p.grad.data
        if group["maximize"]:
            g = -g
        state = self._state(group, p)
        state["step"] += 1
        if wd != 0:
            if decoupled:
                p.data *= 1 - lr * wd
            else:
                g = g + wd * p.data
        ams = state.get("max_exp_avg_sq") if group["amsgrad"] else None
        adam_update(
            p.data,
            g,
            state["exp_avg"].data,
            state["exp_avg_sq"].data,
            state["step"],
            lr,
            beta1,
            beta2,
            eps,
            None if ams is None else ams.data,
        )


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01, as torch.optim.AdamW)."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ):
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
        )
