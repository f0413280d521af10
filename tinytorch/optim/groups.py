"""Weight-decay parameter groups: decay the weight matrices, not the biases and norm gains.

Weight decay pulls every decayed parameter towards zero. That is a useful prior for the
matrices that mix features (Linear weights, embeddings) but not for a bias, which only
shifts, nor for a LayerNorm/BatchNorm gain, whose value 1 means "leave the scale alone".
nanoGPT's `configure_optimizers` splits by shape: every parameter with dim >= 2 decays, every
one with dim < 2 does not. minGPT also spares embeddings; pass
`no_decay_modules=(nn.Embedding,)` for that rule.

    opt = AdamW(decay_param_groups(model, weight_decay=0.1), lr=6e-4, betas=(0.9, 0.95))
"""

from __future__ import annotations


def decay_param_groups(model, weight_decay: float, *, no_decay_modules=()) -> list[dict]:
    """Two optimizer param groups, [{"params": decayed, "weight_decay": weight_decay},
    {"params": the rest, "weight_decay": 0.0}], in the model's parameter order.

    A parameter decays when it has 2 or more dims and the module that owns it is not an
    instance of one of `no_decay_modules`. Frozen parameters (requires_grad=False) are left
    out; a tied parameter appears once. Empty groups are kept, so the group count (and thus
    an optimizer state_dict's layout) never depends on the model.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    no_decay_modules = tuple(no_decay_modules)
    spared = set()
    for _, mod in model.named_modules():
        if no_decay_modules and isinstance(mod, no_decay_modules):
            spared |= {id(p) for p in mod._parameters.values() if p is not None}
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and id(p) not in spared else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
