"""Weight-decay parameter groups: decay the weight matrices, not the biases and norm gains.

Weight decay pulls every decayed parameter towards zero. That is a useful prior for the
matrices that mix features (Linear weights, embeddings) but not for a bias, which only
shifts, nor for a LayerNorm/BatchNorm gain, whose value 1 means "leave the scale alone".
nanoGPT's `configure_optimizers` splits by shape: every parameter with dim >= 2 decays, every
one with dim < 2 does not. minGPT also spares embeddings; pass
`no_decay_modules=(nn.Embedding,)` for that rule.

    opt = AdamW(decay_param_groups(model, weight_decay=0.1), lr=6e-4, betas=(0.9, 0.95))

Fine-tuning (chapter 09) adds a second split: `body_lr_groups` gives the new head a higher
learning rate than the pretrained body, so the head can learn fast without wrecking what
pretraining put into the body (ULMFiT's discriminative fine-tuning, Howard & Ruder 2018).
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


def body_lr_groups(model, head, lr: float, body_lr: float, weight_decay: float = 0.0) -> list[dict]:
    """Fine-tuning's parameter groups: the new head learns at `lr`, the pretrained body at the
    lower `body_lr`, each split by the decay rule above (dim >= 2 decays).

    head: a name prefix or a tuple of them (e.g. ("classifier", "bert.pooler")); a parameter
    whose name (from model.named_parameters()) equals a prefix or starts with prefix + "." is
    the head's, every other trainable one the body's. Returns four groups, always in this
    order: body decayed, body not decayed, head decayed, head not decayed, each with its
    "lr" and "weight_decay"; a prefix that matches no parameter is a ValueError (a typo
    would otherwise train the new head at the body's rate).

        opt = AdamW(body_lr_groups(model, "classifier", lr=1e-3, body_lr=1e-4, weight_decay=0.01))
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    prefixes = (head,) if isinstance(head, str) else tuple(head)
    if not prefixes:
        raise ValueError("head: give at least one parameter name prefix, e.g. 'classifier'")
    # BEGIN EXERCISE ch09: body_lr_groups - head (by prefix) at lr, body at body_lr, each by decay
    groups = {(part, decays): [] for part in ("body", "head") for decays in (True, False)}
    used = set()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        hit = [x for x in prefixes if name == x or name.startswith(x + ".")]
        used.update(hit)
        groups["head" if hit else "body", p.ndim >= 2].append(p)
    unused = [x for x in prefixes if x not in used]
    if unused:
        raise ValueError(
            f"head prefix(es) {unused} match no trainable parameter; names look like "
            f"{[n for n, _ in model.named_parameters()][:4]}"
        )
    return [
        {
            "params": groups[part, decays],
            "lr": lr if part == "head" else body_lr,
            "weight_decay": weight_decay if decays else 0.0,
        }
        for part in ("body", "head")
        for decays in (True, False)
    ]
    # END EXERCISE
