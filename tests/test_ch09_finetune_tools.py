"""Chapter 09's fine-tuning tools: the body/head learning-rate groups and the binary F1 report,
against a hand split, torch.optim and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch import nn
from tinytorch.metrics import binary_scores
from tinytorch.optim import SGD, AdamW, body_lr_groups

pytestmark = pytest.mark.ch09


class Tiny(nn.Module):
    """A 'pretrained body' (embedding, layer norm, linear) and a new 'head'."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(7, 4)
        self.norm = nn.LayerNorm(4)
        self.body = nn.Linear(4, 4)
        self.pooler = nn.Linear(4, 4)
        self.classifier = nn.Linear(4, 2)

    def forward(self, x):
        h = self.body(self.norm(self.embed(x))).mean(dim=1)
        return self.classifier(self.pooler(h).tanh())


def _names(model, params):
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for p in params]


@pytest.mark.exercise("body_lr_groups")
def test_groups_split_head_and_body_then_by_decay():
    model = Tiny()
    groups = body_lr_groups(
        model, ("classifier", "pooler"), lr=1e-3, body_lr=1e-4, weight_decay=0.1
    )
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [
        (1e-4, 0.1),
        (1e-4, 0.0),
        (1e-3, 0.1),
        (1e-3, 0.0),
    ]
    assert [_names(model, g["params"]) for g in groups] == [
        ["embed.weight", "body.weight"],
        ["norm.weight", "norm.bias", "body.bias"],
        ["pooler.weight", "classifier.weight"],
        ["pooler.bias", "classifier.bias"],
    ]


@pytest.mark.exercise("body_lr_groups")
def test_prefix_matches_whole_names_and_skips_frozen():
    model = Tiny()
    model.embed.weight.requires_grad = False
    # "body" names the module body, not "body_x"; the frozen embedding is left out
    groups = body_lr_groups(model, "body", lr=0.5, body_lr=0.25)
    assert _names(model, groups[2]["params"]) == ["body.weight"]
    assert _names(model, groups[3]["params"]) == ["body.bias"]
    rest = _names(model, groups[0]["params"] + groups[1]["params"])
    assert "embed.weight" not in rest and "classifier.weight" in rest
    with pytest.raises(ValueError, match="match no trainable parameter"):
        body_lr_groups(model, ("classifier", "clasifier"), lr=1e-3, body_lr=1e-4)


@pytest.mark.exercise("body_lr_groups")
def test_sgd_step_moves_head_and_body_at_their_rates():
    model = Tiny()
    x = tt.tensor(np.random.randint(0, 7, (3, 5)))
    before = {n: to_numpy(p).copy() for n, p in model.named_parameters()}
    opt = SGD(body_lr_groups(model, "classifier", lr=0.5, body_lr=0.05))
    model(x).sum().backward()
    grads = {n: to_numpy(p.grad).copy() for n, p in model.named_parameters()}
    opt.step()
    for n, p in model.named_parameters():
        rate = 0.5 if n.startswith("classifier.") else 0.05
        assert_close(to_numpy(p), before[n] - rate * grads[n], msg=n)


@pytest.mark.exercise("body_lr_groups")
def test_adamw_with_groups_matches_torch():
    model = Tiny()
    twin = torch.nn.ModuleDict(
        dict(
            embed=torch.nn.Embedding(7, 4),
            norm=torch.nn.LayerNorm(4),
            body=torch.nn.Linear(4, 4),
            pooler=torch.nn.Linear(4, 4),
            classifier=torch.nn.Linear(4, 2),
        )
    )
    twin.load_state_dict({n: torch.tensor(to_numpy(p)) for n, p in model.named_parameters()})
    ours = AdamW(body_lr_groups(model, "classifier", lr=1e-2, body_lr=1e-3, weight_decay=0.1))
    by_name = dict(twin.named_parameters())
    theirs = torch.optim.AdamW(
        [
            {
                "params": [by_name[n] for n in _names(model, g["params"])],
                **{k: g[k] for k in ("lr", "weight_decay")},
            }
            for g in ours.param_groups
        ]  # fmt: skip
    )
    x = np.random.randint(0, 7, (3, 5))
    for _ in range(3):
        ours.zero_grad()
        theirs.zero_grad()
        (model(tt.tensor(x)) ** 2).sum().backward()
        e = twin["body"](twin["norm"](twin["embed"](torch.tensor(x)))).mean(dim=1)
        (twin["classifier"](twin["pooler"](e).tanh()) ** 2).sum().backward()
        ours.step()
        theirs.step()
    for n, p in model.named_parameters():
        assert_close(to_numpy(p), by_name[n], rtol=1e-5, atol=1e-6, msg=n)


def _sk_binary(t, p, pos):
    prf = skm.precision_recall_fscore_support(
        t, p, average="binary", pos_label=pos, zero_division=0.0
    )
    return prf[:3]


@pytest.mark.exercise("binary_f1")
@pytest.mark.parametrize("pos", [1, 0])
def test_binary_scores_match_sklearn_on_random_labels(pos):
    rng = np.random.default_rng()
    for n in (1, 2, 7, 200):
        t, p = rng.integers(0, 2, n), rng.integers(0, 2, n)
        s = binary_scores(t, p, pos_label=pos)
        assert (s.precision, s.recall, s.f1) == pytest.approx(_sk_binary(t, p, pos), rel=1e-12)
        assert s.accuracy == pytest.approx(skm.accuracy_score(t, p))
        cm = skm.confusion_matrix(t, p, labels=[1 - pos, pos])
        np.testing.assert_array_equal(s.matrix, cm)


@pytest.mark.exercise("binary_f1")
def test_binary_scores_edge_cases_are_zero_not_nan():
    none_predicted = binary_scores([1, 1, 0], [0, 0, 0])  # precision 0/0, recall 0/2
    assert (none_predicted.precision, none_predicted.recall, none_predicted.f1) == (0.0, 0.0, 0.0)
    no_positive = binary_scores([0, 0], [0, 0])  # all three 0/0
    assert (no_positive.precision, no_positive.recall, no_positive.f1) == (0.0, 0.0, 0.0)
    assert _sk_binary([0, 0], [0, 0], 1) == (0.0, 0.0, 0.0)
    perfect = binary_scores(tt.tensor([1, 0, 1]), torch.tensor([1, 0, 1]))
    assert (perfect.precision, perfect.recall, perfect.f1) == (1.0, 1.0, 1.0)
    # F1 is the harmonic mean of precision and recall
    s = binary_scores([1, 1, 1, 0, 0], [1, 0, 0, 1, 1])
    assert s.f1 == pytest.approx(2 * s.precision * s.recall / (s.precision + s.recall))


def test_binary_scores_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="same, non-zero length"):
        binary_scores([1, 0], [1])
