"""nn modules against torch.nn: same state_dict keys and shapes, and with the same weights
(copied through state_dict) the same forward and the same gradients for the input and for
every parameter, in float64 and float32. Plus the Module API, initializations and
load_state_dict's error messages.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch import nn
from tinytorch.nn import functional as F

pytestmark = pytest.mark.ch03

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}


def _mlp_lm(lib, vocab=11, context=3, emb=4, hidden=16):
    """Bengio et al.'s MLP language model, written once for both libraries."""

    class MLPLM(lib.Module):
        def __init__(self):
            super().__init__()
            self.emb = lib.Embedding(vocab, emb)
            self.hidden = lib.Sequential(lib.Linear(context * emb, hidden), lib.Tanh())
            self.out = lib.Linear(hidden, vocab)

        def forward(self, idx):
            e = self.emb(idx)
            return self.out(self.hidden(e.reshape(e.shape[0], -1)))

    return MLPLM()


def _stack(lib):
    """ModuleList and ModuleDict inside a model: their names are part of the keys."""

    class Stack(lib.Module):
        def __init__(self):
            super().__init__()
            self.blocks = lib.ModuleList([lib.Linear(6, 6), lib.Linear(6, 6, bias=False)])
            self.heads = lib.ModuleDict({"norm": lib.LayerNorm(6), "act": lib.GELU("tanh")})

        def forward(self, x):
            for b in self.blocks:
                x = self.heads["act"](b(x))
            return self.heads["norm"](x)

    return Stack()


FLOAT_IN = (3, 5, 6)  # (B, T, C)
IDS_IN = ("ids", (4, 3), 11)
MODULES = {
    "Linear": (lambda lib: lib.Linear(6, 4), FLOAT_IN),
    "Linear-nobias": (lambda lib: lib.Linear(6, 4, bias=False), FLOAT_IN),
    "Embedding": (lambda lib: lib.Embedding(11, 4), IDS_IN),
    "Embedding-padding": (lambda lib: lib.Embedding(11, 4, padding_idx=2), IDS_IN),
    "LayerNorm": (lambda lib: lib.LayerNorm(6), FLOAT_IN),
    "LayerNorm-2d": (lambda lib: lib.LayerNorm((5, 6), eps=1e-3), FLOAT_IN),
    "LayerNorm-noaffine": (lambda lib: lib.LayerNorm(6, elementwise_affine=False), FLOAT_IN),
    "LayerNorm-nobias": (lambda lib: lib.LayerNorm(6, bias=False), FLOAT_IN),
    "ReLU": (lambda lib: lib.ReLU(), FLOAT_IN),
    "GELU": (lambda lib: lib.GELU(), FLOAT_IN),
    "GELU-tanh": (lambda lib: lib.GELU(approximate="tanh"), FLOAT_IN),
    "Tanh": (lambda lib: lib.Tanh(), FLOAT_IN),
    "Sigmoid": (lambda lib: lib.Sigmoid(), FLOAT_IN),
    "Softmax": (lambda lib: lib.Softmax(dim=1), FLOAT_IN),
    "Identity": (lambda lib: lib.Identity(), FLOAT_IN),
    "Dropout-eval": (lambda lib: lib.Dropout(0.3).eval(), FLOAT_IN),
    "Sequential": (
        lambda lib: lib.Sequential(
            lib.Linear(6, 8), lib.ReLU(), lib.Dropout(0.0), lib.Linear(8, 3)
        ),
        FLOAT_IN,
    ),
    "ModuleList-ModuleDict": (_stack, FLOAT_IN),
    "MLP-language-model": (_mlp_lm, IDS_IN),
}


def _input(spec, dtype):
    if spec[0] == "ids":
        _, shape, vocab = spec
        ids = np.random.randint(0, vocab, size=shape)
        ids[0, 0] = 2  # the padding row is used at least once
        return ids
    return np.random.randn(*spec).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", MODULES)
def test_module_matches_torch(name, dtype, device):
    make, spec = MODULES[name]
    ours, ref = make(nn), make(torch.nn).to(TORCH_DTYPE[dtype])
    ref_sd = ref.state_dict()
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in ref_sd.items()
    ], "state_dict keys/shapes differ"
    ours.to(dtype).to(device)
    ours.load_state_dict(ref_sd)  # torch tensors go in directly
    ours.train(ref.training)

    x = _input(spec, dtype)
    floats = x.dtype.kind == "f"
    xt = tt.tensor(x, device=device, requires_grad=floats)
    xr = torch.tensor(x, requires_grad=floats)
    out, rout = ours(xt), ref(xr)
    # float32 modules that chain several ops accumulate a few ulps more than one op
    tol = {} if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    assert out.dtype == np.dtype(dtype)
    assert_close(out, rout, msg=f"{name} forward", **tol)

    g = np.random.randn(*rout.shape).astype(dtype)
    out.backward(tt.tensor(g, device=device))
    rout.backward(torch.from_numpy(g))
    if floats:
        assert_close(xt.grad, xr.grad, msg=f"{name} input grad", **tol)
    ref_params = dict(ref.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(ref_params)
    for n, p in ours.named_parameters():
        assert p.grad is not None, f"{name}: {n} got no gradient"
        assert_close(p.grad, ref_params[n].grad, msg=f"{name} grad of {n}", **tol)


@pytest.mark.exercise("module_setattr")
def test_setattr_registers_parameters_modules_and_plain_values():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(tt.zeros(3))
            self.lin = nn.Linear(2, 2)
            self.size = 3
            self.register_buffer("mask", tt.ones(2))

    m = Net()
    assert list(m._parameters) == ["w"] and m._parameters["w"] is m.w
    assert list(m._modules) == ["lin"] and m._modules["lin"] is m.lin
    assert m.size == 3 and "size" not in m._parameters and "size" not in m._modules
    assert "w" not in m.__dict__ and "lin" not in m.__dict__  # only in the registries
    m.w = nn.Linear(3, 3)  # a new kind of value replaces the old registration
    assert "w" not in m._parameters and m._modules["w"] is m.w
    m.lin = 5
    assert "lin" not in m._modules and m.lin == 5
    m.mask = tt.zeros(2)  # a tensor assigned to a buffer's name stays a buffer
    assert "mask" in m._buffers and not to_numpy(m._buffers["mask"]).any()
    m.plain = tt.ones(1)  # a plain Tensor (not a Parameter) is not a weight
    assert "plain" not in m._parameters and m.plain.shape == (1,)


@pytest.mark.exercise("named_parameters")
def test_named_parameters_have_dotted_names_in_order_and_tied_weights_once():
    def build(lib):
        return lib.Sequential(
            lib.Linear(2, 3),
            lib.Tanh(),
            lib.Sequential(lib.Linear(3, 3, bias=False)),
            lib.Linear(3, 1),
        )

    ours, ref = build(nn), build(torch.nn)
    names = [n for n, _ in ours.named_parameters()]
    assert names == [n for n, _ in ref.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.0.weight", "3.weight", "3.bias"]
    assert [p for _, p in ours.named_parameters()][2] is ours[2][0].weight
    assert [n for n, _ in ours.named_parameters(prefix="model")][0] == "model.0.weight"
    assert list(ours[0].named_parameters(recurse=False)) == [
        ("weight", ours[0].weight),
        ("bias", ours[0].bias),
    ]
    assert list(ours.named_parameters(recurse=False)) == []  # Sequential owns none itself
    ours[3].weight = ours[2][0].weight  # tied: listed once, under its first name
    ours[3].bias = None
    assert [n for n, _ in ours.named_parameters()] == ["0.weight", "0.bias", "2.0.weight"]
    assert len(list(ours.parameters())) == 3


@pytest.mark.exercise("linear")
@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 6), (6,)], ids=["N,in", "B,T,in", "in"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(shape, bias, device):
    x, w, b = np.random.randn(*shape), np.random.randn(5, 6), np.random.randn(5)
    xt, wt, bt = (tt.tensor(a, device=device, requires_grad=True) for a in (x, w, b))
    xr, wr, br = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    out = F.linear(xt, wt, bt if bias else None)
    ref = torch.nn.functional.linear(xr, wr, br if bias else None)
    assert_close(out, ref)
    g = np.random.randn(*ref.shape)
    out.backward(tt.tensor(g, device=device))
    ref.backward(torch.tensor(g))
    for ours_t, ref_t in ((xt, xr), (wt, wr)) + (((bt, br),) if bias else ()):
        assert_close(ours_t.grad, ref_t.grad)


def test_load_state_dict_takes_numpy_and_keeps_dtype(device):
    ours = nn.Sequential(nn.Linear(3, 2), nn.LayerNorm(2)).to(device)
    arrays = {k: np.random.randn(*v.shape) for k, v in ours.state_dict().items()}  # float64
    result = ours.load_state_dict(arrays)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for k, v in ours.state_dict().items():
        assert v.dtype == np.float32 and v.device == device
        assert_close(v, arrays[k].astype(np.float32), msg=k)
    arrays["0.weight"][0, 0] = 123.0  # the module holds a copy, not the caller's array
    assert to_numpy(ours[0].weight)[0, 0] != 123.0


def test_load_state_dict_names_missing_unexpected_and_misshaped_keys():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    good = {k: to_numpy(v).copy() for k, v in model.state_dict().items()}

    missing = dict(good)
    del missing["2.bias"]
    with pytest.raises(RuntimeError, match=r"missing key: 2\.bias"):
        model.load_state_dict(missing)

    extra = dict(good, **{"3.weight": np.zeros((2, 2))})
    with pytest.raises(RuntimeError, match=r"unexpected key: 3\.weight"):
        model.load_state_dict(extra)

    wrong = dict(good, **{"0.weight": np.zeros((4, 5))})
    with pytest.raises(RuntimeError, match=r"0\.weight.*\(4, 5\).*\(4, 3\)"):
        model.load_state_dict(wrong)
    with pytest.raises(RuntimeError, match=r"0\.weight"):  # shapes are checked even so
        model.load_state_dict(wrong, strict=False)

    before = to_numpy(model[0].weight).copy()
    result = model.load_state_dict(dict(missing, **{"3.weight": np.zeros(1)}), strict=False)
    assert result.missing_keys == ["2.bias"] and result.unexpected_keys == ["3.weight"]
    assert_close(model[0].weight, before)


def test_module_api_mirrors_torch():
    def build(lib):
        return lib.Sequential(
            lib.Sequential(lib.Linear(2, 3), lib.Tanh()),
            lib.ModuleList([lib.Linear(3, 3), lib.Linear(3, 3)]),
            lib.ModuleDict({"ln": lib.LayerNorm(3), "drop": lib.Dropout(0.1)}),
            lib.Embedding(5, 3, padding_idx=0),
        )

    ours, ref = build(nn), build(torch.nn)
    assert repr(ours) == repr(ref)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in ref.named_modules()]
    assert [type(m).__name__ for m in ours.children()] == [type(m).__name__ for m in ref.children()]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    assert ours.get_submodule("2.ln") is ours[2]["ln"]

    ours.eval()
    assert not any(m.training for m in ours.modules())
    ours.train()
    assert all(m.training for m in ours.modules())

    visited = []
    ours.apply(lambda m: visited.append(type(m).__name__))
    assert visited[-1] == "Sequential" and visited.count("Linear") == 3  # children first

    for p in ours.parameters():
        p.grad = tt.ones(*p.shape)
    ours.zero_grad()
    assert all(p.grad is None for p in ours.parameters())

    ours.to(tt.float64)
    assert all(p.dtype == np.float64 for p in ours.parameters())
    assert ours.state_dict()["3.weight"] is ours[3].weight  # the Parameter itself

    sliced = ours[1:3]  # a Sequential slice keeps the children's names
    assert list(sliced.state_dict())[0] == "1.0.weight"


def test_tied_weights_and_buffers():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(7, 4)
            self.head = nn.Linear(4, 7, bias=False)
            self.head.weight = self.emb.weight
            self.register_buffer("mask", tt.ones(7))
            self.register_buffer("cache", tt.zeros(2), persistent=False)

    m = Tied()
    assert len(list(m.parameters())) == 1  # shared parameters are listed once
    assert list(m.state_dict()) == ["mask", "emb.weight", "head.weight"]
    m.mask = tt.zeros(7)  # assigning a tensor to a buffer keeps it a buffer
    assert "mask" in m.state_dict() and not to_numpy(m.state_dict()["mask"]).any()


def test_parameter_and_attribute_errors():
    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(tt.zeros(2))  # before super().__init__()

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Early()
    with pytest.raises(AttributeError, match="nope"):
        _ = nn.Linear(2, 2).nope
    with pytest.raises(RuntimeError, match="floating"):
        nn.Parameter(tt.tensor([1, 2]))


def test_default_initializations_follow_torch():
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)  # PyTorch's kaiming_uniform_(a=sqrt(5)) works out to this
    w, b = to_numpy(lin.weight.detach()), to_numpy(lin.bias.detach())
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.03  # uniform: std = bound/sqrt(3)
    assert np.abs(b).max() <= bound
    emb = to_numpy(nn.Embedding(300, 100, padding_idx=5).weight.detach())
    assert abs(emb.mean()) < 0.03 and abs(emb.std() - 1) < 0.03  # N(0, 1)
    assert not emb[5].any()
    ln = nn.LayerNorm(7)
    assert (to_numpy(ln.weight.detach()) == 1).all() and not to_numpy(ln.bias.detach()).any()


@pytest.mark.parametrize(
    "fn,bound",
    [
        ("xavier_uniform_", lambda fi, fo: math.sqrt(6 / (fi + fo))),
        ("kaiming_uniform_", lambda fi, fo: math.sqrt(2) * math.sqrt(3 / fi)),
    ],
)
def test_init_bounds(fn, bound):
    t = tt.empty(300, 200, requires_grad=True)
    getattr(nn.init, fn)(t)
    a = to_numpy(t.detach())
    b = bound(200, 300)
    assert np.abs(a).max() <= b and np.abs(a).max() > 0.99 * b
    assert abs(a.std() / (b / math.sqrt(3)) - 1) < 0.03
    nn.init.normal_(t, mean=2.0, std=0.5)
    a = to_numpy(t.detach())
    assert abs(a.mean() - 2) < 0.01 and abs(a.std() - 0.5) < 0.01
    nn.init.uniform_(t, -3, -1)
    a = to_numpy(t.detach())
    assert a.min() >= -3 and a.max() < -1 and abs(a.mean() + 2) < 0.02
    nn.init.zeros_(t)
    assert not to_numpy(t.detach()).any()
    nn.init.ones_(t)
    assert (to_numpy(t.detach()) == 1).all()


def test_dropout_in_training(device):
    p = 0.3
    drop = nn.Dropout(p).to(device)
    x = tt.tensor(np.random.rand(200, 100) + 0.5, device=device, requires_grad=True)
    y = drop(x)
    xs, ys = to_numpy(x.detach()), to_numpy(y.detach())
    kept = ys != 0
    assert abs(1 - kept.mean() - p) < 0.02  # about p of the elements are dropped
    np.testing.assert_allclose(ys[kept], xs[kept] / (1 - p), rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(to_numpy(x.grad), kept / (1 - p), rtol=1e-6)
    drop.eval()
    assert drop(x) is x
    assert not to_numpy(nn.Dropout(1.0)(x).detach()).any()


def _both(fn, ref_fn, inputs, dtype=np.float64, tol=None):
    """Run a functional op in both libraries; compare the value and each input's grad."""
    ours = [
        tt.tensor(a, requires_grad=a.dtype.kind == "f") if isinstance(a, np.ndarray) else a
        for a in inputs
    ]
    refs = [
        torch.tensor(a, requires_grad=a.dtype.kind == "f") if isinstance(a, np.ndarray) else a
        for a in inputs
    ]
    out, rout = fn(*ours), ref_fn(*refs)
    assert_close(out, rout, **(tol or {}))
    g = np.random.randn(*rout.shape)
    out.backward(tt.tensor(g, dtype=out.dtype))
    rout.backward(torch.tensor(g, dtype=rout.dtype))
    for a, r in zip(ours, refs):
        if isinstance(a, tt.Tensor) and a.requires_grad:
            assert_close(a.grad, r.grad, **(tol or {}))


def test_losses_match_torch():
    n, c = 6, 5
    x = np.random.randn(n, c)
    t = np.random.randint(0, c, n)
    t[1] = -100
    w = np.random.rand(c) + 0.5
    for red in ("mean", "sum", "none"):
        _both(
            lambda a, b, red=red: F.cross_entropy(a, b, weight=tt.tensor(w), reduction=red),
            lambda a, b, red=red: torch.nn.functional.cross_entropy(
                a, b, weight=torch.tensor(w), reduction=red
            ),
            [x, t],
        )
        _both(
            lambda a, b, red=red: F.nll_loss(F.log_softmax(a, 1), b, reduction=red),
            lambda a, b, red=red: torch.nn.functional.nll_loss(a.log_softmax(1), b, reduction=red),
            [x, t],
        )
    # (N, C, d) inputs, weight and ignore_index together
    x3, t3 = np.random.randn(4, c, 3), np.random.randint(0, c, (4, 3))
    t3[0, 1] = 0
    _both(
        lambda a, b: F.nll_loss(a, b, weight=tt.tensor(w), ignore_index=0),
        lambda a, b: torch.nn.functional.nll_loss(a, b, weight=torch.tensor(w), ignore_index=0),
        [x3, t3],
    )
    # probability targets, with label smoothing
    probs = np.random.dirichlet(np.ones(c), size=n)
    _both(
        lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1),
        lambda a, b: torch.nn.functional.cross_entropy(a, b, label_smoothing=0.1),
        [x, probs],
    )
    _both(F.mse_loss, torch.nn.functional.mse_loss, [x, np.random.randn(n, c)])
    tgt = np.random.rand(n, c)
    pw, bw = np.random.rand(c) + 0.5, np.random.rand(n, c)
    _both(
        lambda a, b: F.binary_cross_entropy_with_logits(
            a * 10, b, weight=tt.tensor(bw), pos_weight=tt.tensor(pw)
        ),
        lambda a, b: torch.nn.functional.binary_cross_entropy_with_logits(
            a * 10, b, weight=torch.tensor(bw), pos_weight=torch.tensor(pw)
        ),
        [x, tgt],
    )
    _both(lambda a: F.layer_norm(a, (c,)), lambda a: torch.nn.functional.layer_norm(a, (c,)), [x])
    _both(lambda a, b: F.linear(a, b), torch.nn.functional.linear, [x, np.random.randn(3, c)])


def test_one_hot_and_loss_errors():
    ids = np.random.randint(0, 6, (3, 4))
    np.testing.assert_array_equal(
        to_numpy(F.one_hot(tt.tensor(ids), 6)),
        torch.nn.functional.one_hot(torch.tensor(ids), 6).numpy(),
    )
    with pytest.raises(IndexError, match="out of range"):
        F.nll_loss(tt.randn(2, 3), tt.tensor([0, 3]))
    with pytest.raises(TypeError, match="int64"):
        F.nll_loss(tt.randn(2, 3), tt.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="target shape"):
        F.nll_loss(tt.randn(2, 3), tt.tensor([0, 1, 2]))
    with pytest.raises(RuntimeError, match="features"):
        nn.Linear(3, 2)(tt.randn(4, 5))
