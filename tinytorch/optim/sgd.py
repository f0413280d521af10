"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

The update, exactly as torch.optim.SGD (so 20 steps agree to rounding), for each parameter p
whose .grad is set, updating p.data in place:

    g = -grad if maximize else grad
    g = g (+ weight_decay * p)                 L2 penalty folded into the gradient
    b = g on the first step, else momentum * b + (1 - dampening) * g
    g = g + momentum * b  (nesterov)  or  g = b
    p = p - lr * g

With momentum the buffer b is kept per parameter as self.state[p]["momentum_buffer"] (PyTorch's
name, so optimizer state dicts move between the two), a Tensor holding a copy of g at first.
"""

from __future__ import annotations

from ..tensor import Tensor
from .optimizer import Optimizer, check_non_negative


class SGD(Optimizer):
    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ):
        check_non_negative(lr=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
                maximize=maximize,
            ),
        )

    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group, p in self._params_with_grad():
            lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
            dampening, nesterov = group["dampening"], group["nesterov"]
            # BEGIN EXERCISE ch03: sgd - maximize, weight decay, state["momentum_buffer"], step
            g = p.grad.data
            if group["maximize"]:
                g = -g
            if wd != 0:
                g = g + wd * p.data
            if momentum != 0:
                state = self.state.setdefault(p, {})
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = Tensor._wrap(g.copy())
                else:
                    buf.data *= momentum
                    buf.data += (1 - dampening) * g
                g = g + momentum * buf.data if nesterov else buf.data
            p.data -= lr * g
            # END EXERCISE
        return loss
