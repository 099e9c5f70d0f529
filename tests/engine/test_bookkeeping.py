"""Book-keeping clipping (dpcore.engine.bookkeeping): equal to Opacus' hooks mode, and falls back where it must."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from torch import nn

from dpcore import ConfigError, TrainConfig, train
from dpcore.engine import bookkeeping, bookkeeping_layers
from dpcore.engine.bookkeeping import BookkeepingCriterion, BookkeepingModule, bookkeeping_supported
from dpcore.engine.models import MODELS, make_private_compatible
from dpcore.engine.training import _choose_grad_sample_mode, hooks_sample_norms

SEED_CONFIG = TrainConfig(dataset="synthetic", target_epsilon=3.0, target_delta=1e-5, max_grad_norm=1.0,
                          epochs=2, batch_size=64, lr=1e-3, seed=42, reproducible=True)


def _opacus_hooks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, clip: float):
    """(per-sample norms, clipped noise-free gradient sums) computed by Opacus' hooks mode and DPOptimizer."""
    wrapped = GradSampleModule(copy.deepcopy(model))
    params = [p for p in wrapped.parameters() if p.requires_grad]
    optimizer = DPOptimizer(torch.optim.SGD(params, lr=0.1), noise_multiplier=0.0, max_grad_norm=clip,
                            expected_batch_size=len(x))
    nn.functional.cross_entropy(wrapped(x), y).backward()
    norms = hooks_sample_norms(params)
    optimizer.pre_step()  # clip, accumulate, add zero noise, divide by the expected batch size
    return norms, [p.grad * len(x) for p in params]


def _bookkeeping(model: nn.Module, x: torch.Tensor, y: torch.Tensor, clip: float):
    """(per-sample norms, clipped gradient sums) from one book-keeping backward."""
    module = BookkeepingModule(model, max_grad_norm=clip)
    BookkeepingCriterion(module, nn.CrossEntropyLoss())(module(x), y).backward()
    return module.per_sample_gradient_norms, [p.grad for p in model.parameters() if p.requires_grad]


def _assert_same(model: nn.Module, x: torch.Tensor, y: torch.Tensor, clip: float) -> None:
    ref_norms, ref_sums = _opacus_hooks(model, x, y, clip)
    norms, sums = _bookkeeping(model, x, y, clip)
    torch.testing.assert_close(norms, ref_norms, rtol=1e-5, atol=1e-5)
    assert len(sums) == len(ref_sums)
    for got, want in zip(sums, ref_sums, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(MODELS)), batch=st.integers(1, 6), classes=st.integers(2, 4),
       channels=st.integers(1, 3), side=st.sampled_from([4, 5, 8, 9]), features=st.integers(1, 12),
       clip=st.floats(1e-3, 10.0), seed=st.integers(0, 2**16))
def test_clipped_sums_and_norms_match_opacus_hooks_on_every_registry_model(name, batch, classes, channels, side,
                                                                            features, clip, seed):
    torch.manual_seed(seed)
    shape = (channels, side, side) if "image" in MODELS[name].kinds and name.startswith("cnn") else (features,)
    model, _ = make_private_compatible(MODELS[name].build(shape, classes))
    assert bookkeeping_supported(model)
    x, y = torch.randn(batch, *shape, dtype=torch.float64), torch.randint(0, classes, (batch,))
    _assert_same(model.double(), x, y, clip)  # float64: see the sequence test (float32 rounding alone can exceed 1e-5)


class _Sequence(nn.Module):
    """Linear on a sequence (B, T, d) with LayerNorm: the ghost-norm (Gram) and per-sample-gradient branches."""

    def __init__(self, steps: int, features: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.embed, self.norm = nn.Linear(features, hidden), nn.LayerNorm(hidden)
        self.head = nn.Linear(steps * hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.norm(self.embed(x))).flatten(1))


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 5), steps=st.integers(1, 9), features=st.integers(1, 6), hidden=st.integers(1, 6),
       clip=st.floats(1e-3, 10.0), seed=st.integers(0, 2**16))
def test_sequence_linear_and_layernorm_match_opacus_hooks(batch, steps, features, hidden, clip, seed):
    """In float64: on tiny sums of nearly cancelling clipped terms float32 rounding alone exceeds 1e-5 (seed 264,
    batch 5, 2 steps, 1 feature, hidden 2: Opacus' own float32 result is 1.0e-5 from float64, ours 1.25e-5,
    the same before and after the book-keeping speed-ups); in float64 only a difference in the maths can."""
    torch.manual_seed(seed)
    model = _Sequence(steps, features, hidden, 3).double()
    _assert_same(model, torch.randn(batch, steps, features, dtype=torch.float64), torch.randint(0, 3, (batch,)), clip)


def test_frozen_parameters_are_left_out_as_opacus_does():
    torch.manual_seed(0)
    model, _ = make_private_compatible(MODELS["cnn"].build((1, 8, 8), 3))
    model.features[0].weight.requires_grad_(False)
    model.classifier[1].bias.requires_grad_(False)
    _assert_same(model, torch.randn(5, 1, 8, 8), torch.randint(0, 3, (5,)), 0.3)


class _Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.scale)


def test_unknown_layers_fall_back_to_opacus():
    conv1d = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 4, 2))
    tied = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    tied[1].weight = tied[0].weight
    grouped = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(2, 2))
    for model in (conv1d, _Custom(), grouped, nn.Sequential(nn.Embedding(5, 2), nn.Flatten(), nn.Linear(2, 2))):
        assert not bookkeeping_supported(model)
        assert _choose_grad_sample_mode("auto", model) == "ghost"
        with pytest.raises(ConfigError, match="bookkeeping"):
            _choose_grad_sample_mode("bookkeeping", model)
    assert _choose_grad_sample_mode("auto", tied) == "hooks"  # shared parameters: neither ours nor ghost
    for name in MODELS:
        model, _ = make_private_compatible(MODELS[name].build((1, 8, 8), 3))
        assert _choose_grad_sample_mode("auto", model) == "bookkeeping"


def test_auto_trains_with_bookkeeping_and_falls_back_for_an_unknown_layer(monkeypatch):
    from dpcore.engine import training

    run = train(SEED_CONFIG.replace(epochs=1))
    assert run.grad_sample_mode == "bookkeeping"
    monkeypatch.setattr(training, "bookkeeping_supported", lambda model: False)
    fallback = train(SEED_CONFIG.replace(epochs=1))
    assert fallback.grad_sample_mode == "ghost"
    np.testing.assert_allclose(run.history["clip_fraction"], fallback.history["clip_fraction"])


@pytest.mark.parametrize("physical_batch_size", [None, 16])
def test_bookkeeping_run_equals_ghost_run_with_the_same_noise_and_accounting(physical_batch_size):
    """Same seed: same Poisson batches, same noise draws, same accountant; only float rounding differs."""
    ghost = train(SEED_CONFIG.replace(grad_sample_mode="ghost"))
    ours = train(SEED_CONFIG.replace(grad_sample_mode="bookkeeping", physical_batch_size=physical_batch_size))
    assert ours.grad_sample_mode == "bookkeeping"
    assert ours.accountant_history == ghost.accountant_history
    assert ours.final_epsilon == ghost.final_epsilon
    np.testing.assert_array_equal(ours.history["epsilon"], ghost.history["epsilon"])
    np.testing.assert_array_equal(ours.history["batch_size"], ghost.history["batch_size"])
    np.testing.assert_allclose(ours.history["clip_fraction"], ghost.history["clip_fraction"])
    np.testing.assert_allclose(ours.history["loss"], ghost.history["loss"], rtol=1e-4)
    for a, b in zip(ours.model.state_dict().values(), ghost.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_noise_is_added_with_the_calibrated_scale():
    """With a huge clipping bound nothing is clipped and the update is dominated by N(0, sigma^2 C^2) / B."""
    cfg = SEED_CONFIG.replace(target_epsilon=None, noise_multiplier=1.0, max_grad_norm=1e3, epochs=1, lr=1.0,
                              optimizer="sgd", momentum=0.0)
    run = train(cfg)
    torch.manual_seed(cfg.seed)  # the run's initial weights
    start, _ = make_private_compatible(MODELS["mlp"].build(run.data.info.input_shape, run.data.info.num_classes))
    moved = torch.cat([(a - b).flatten() for a, b in zip(run.model.state_dict().values(),
                                                           start.state_dict().values(), strict=True)])
    expected_batch = int(run.data.n_members * run.sample_rate)
    per_step_std = 1.0 * 1e3 / expected_batch  # lr * sigma * C / B, summed over independent steps
    observed = float(moved.std()) / np.sqrt(run.steps)
    assert 0.8 * per_step_std < observed < 1.2 * per_step_std


class _ConvNet(nn.Module):
    """One Conv2d of any geometry, then GroupNorm (frozen parts optional) and a linear head."""

    def __init__(self, conv: nn.Conv2d, side: int, classes: int, *, freeze: str) -> None:
        super().__init__()
        self.conv = conv
        self.norm = nn.GroupNorm(1, conv.out_channels)
        with torch.no_grad():
            features = conv(torch.zeros(1, conv.in_channels, side, side)).numel()
        self.head = nn.Linear(features, classes)
        for name in filter(None, freeze.split(",")):
            self.get_parameter(name).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.norm(self.conv(x))).flatten(1))


def _conv_case(in_ch: int, out_ch: int, kernel: tuple[int, int], stride: int, padding: tuple[int, int],
               dilation: int, bias: bool, side: int, batch: int, freeze: str, seed: int, clip: float = 0.5) -> None:
    """Compared in float64: a conv bias right before GroupNorm has a zero true gradient (GroupNorm removes the
    mean) and tiny batches sum clipped terms that nearly cancel, so float32 rounding alone (Opacus' too: 4e-5
    from its own float64 result on such cases) would exceed 1e-5; in float64 only a difference in the maths can."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, dilation=dilation, bias=bias)
    model = _ConvNet(conv, side, 3, freeze=freeze).double()
    x = torch.randn(batch, in_ch, side, side, dtype=torch.float64) * 2 + 1  # off-centre: GroupNorm's centring matters
    _assert_same(model, x, torch.randint(0, 3, (batch,)), clip)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(in_ch=st.integers(1, 4), out_ch=st.integers(1, 5), kh=st.integers(1, 3), kw=st.integers(1, 3),
       stride=st.integers(1, 2), ph=st.integers(0, 2), pw=st.integers(0, 2), dilation=st.integers(1, 2),
       bias=st.booleans(), side=st.integers(5, 9), batch=st.integers(1, 5),
       freeze=st.sampled_from(["", "norm.weight", "norm.bias", "conv.bias", "norm.weight,norm.bias"]),
       seed=st.integers(0, 2**16))
def test_conv2d_of_any_geometry_matches_opacus_hooks(in_ch, out_ch, kh, kw, stride, ph, pw, dilation, bias, side,
                                                     batch, freeze, seed):
    """Strided unfolding in both layouts, ghost norm and per-sample gradients, GroupNorm from saved statistics."""
    if freeze == "conv.bias" and not bias:
        freeze = ""
    out_side = [(side + 2 * pad - dilation * (k - 1) - 1) // stride + 1 for pad, k in ((ph, kh), (pw, kw))]
    assume(min(out_side) >= 1 and out_ch * out_side[0] * out_side[1] > 1)  # GroupNorm needs two values per group
    _conv_case(in_ch, out_ch, (kh, kw), stride, (ph, pw), dilation, bias, side, batch, freeze, seed)


@pytest.mark.parametrize(("in_ch", "out_ch", "side", "kernel", "layout", "norm"), [
    (1, 4, 8, (3, 3), "weight order", "per-sample"),   # C_in k_w = 3 <= W_out = 8, L^2 = 64 > K C_out = 36
    (1, 10, 3, (3, 3), "weight order", "ghost"),       # C_in k_w = 3 <= W_out = 3, L^2 = 81 <= 9 * 10
    (6, 2, 8, (3, 3), "channels last", "per-sample"),  # 18 > 8, L^2 = 64 > 54 * 2
    (6, 8, 4, (3, 3), "channels last", "ghost"),       # 18 > 4, L^2 = 16 <= 54 * 8
])
def test_every_conv2d_branch_matches_opacus_hooks(in_ch, out_ch, side, kernel, layout, norm):
    conv = nn.Conv2d(in_ch, out_ch, kernel, padding=1)
    rows, channels_last = bookkeeping_layers._unfold_rows(conv, torch.randn(2, in_ch, side, side),
                                                          bookkeeping_layers._Workspace())
    assert channels_last == (layout == "channels last")
    steps, columns = rows.shape[1], rows.shape[2]
    assert (steps * steps <= columns * out_ch) == (norm == "ghost")
    _conv_case(in_ch, out_ch, kernel, 1, (1, 1), 1, True, side, 4, "", 0)


def test_group_norm_without_saved_statistics_recomputes_them(monkeypatch):
    """Where autograd kept no GroupNorm statistics (another graph node) they are recomputed, with the same result."""
    torch.manual_seed(1)
    model, _ = make_private_compatible(MODELS["cnn"].build((2, 8, 8), 3))
    x, y = torch.randn(5, 2, 8, 8) * 3 + 2, torch.randint(0, 3, (5,))
    norms, sums = _bookkeeping(copy.deepcopy(model), x, y, 0.2)
    monkeypatch.setattr(bookkeeping, "_saved_group_stats", lambda output: None)
    _assert_same(model, x, y, 0.2)
    fallback_norms, fallback_sums = _bookkeeping(model, x, y, 0.2)
    torch.testing.assert_close(fallback_norms, norms, rtol=1e-6, atol=1e-6)
    for got, want in zip(fallback_sums, sums, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_reused_scratch_buffers_stay_correct_as_the_batch_size_changes():
    """The workspace keeps the unfolded inputs between steps: a larger, smaller, then larger batch still match."""
    torch.manual_seed(2)
    model, _ = make_private_compatible(MODELS["cnn"].build((16, 4, 4), 3))  # channels-last unfolding, ghost norm
    module = BookkeepingModule(model, max_grad_norm=0.5)
    criterion = BookkeepingCriterion(module, nn.CrossEntropyLoss())
    assert bookkeeping._Workspace.SMALL <= 300 * 16 * 6 * 6  # the padded input of this batch uses a reused buffer
    for batch in (300, 7, 300, 120):
        x, y = torch.randn(batch, 16, 4, 4), torch.randint(0, 3, (batch,))
        ref_norms, ref_sums = _opacus_hooks(model, x, y, 0.5)
        criterion(module(x), y).backward()
        torch.testing.assert_close(module.per_sample_gradient_norms, ref_norms, rtol=1e-5, atol=1e-5)
        for got, want in zip([p.grad for p in model.parameters()], ref_sums, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    assert module._workspace._buffers  # the large temporaries did go through the workspace


# The optimizer step (noise, scaling, accountant) is tested bit for bit against Opacus in test_bookkeeping_step.py.


class _WithUnusedLayer(nn.Module):
    """A layer is called but its output never reaches the loss: its gradient is zero, the others are unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.used, self.unused = nn.Linear(4, 3), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.unused(x)
        return self.used(x)


def test_a_layer_the_loss_does_not_reach_gets_a_zero_gradient():
    torch.manual_seed(4)
    model = _WithUnusedLayer()
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    ref_norms, ref_sums = _opacus_hooks(nn.Sequential(copy.deepcopy(model.used)), x, y, 0.3)
    norms, _ = _bookkeeping(model, x, y, 0.3)
    torch.testing.assert_close(norms, ref_norms, rtol=1e-5, atol=1e-5)
    for got, want in zip([model.used.weight.grad, model.used.bias.grad], ref_sums, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(model.unused.weight.grad, torch.zeros(2, 4))
    assert torch.equal(model.unused.bias.grad, torch.zeros(2))


def test_sequential_chain_and_hooks_and_public_autograd_give_the_same_sums(monkeypatch):
    """A plain nn.Sequential runs layer by layer (no hooks); a hooked container falls back to hooks; the engine call
    and torch.autograd.grad agree. All three give the same norms and clipped sums, equal to Opacus' hooks mode."""
    torch.manual_seed(6)
    model, _ = make_private_compatible(MODELS["mlp"].build((9,), 3))
    model = model.double()
    x, y = torch.randn(11, 9, dtype=torch.float64) * 2, torch.randint(0, 3, (11,))
    assert BookkeepingModule(copy.deepcopy(model), max_grad_norm=0.5)._chain is not None
    chain_norms, chain_sums = _bookkeeping(copy.deepcopy(model), x, y, 0.5)
    hooked = copy.deepcopy(model)
    hooked.register_forward_hook(lambda module, inputs, output: None)
    module = BookkeepingModule(hooked, max_grad_norm=0.5)
    assert module._chain is None and len(module._handles) == 3
    module._close()
    hook_norms, hook_sums = _bookkeeping(hooked, x, y, 0.5)
    monkeypatch.setattr(bookkeeping, "_engine_run_backward", None)
    public_norms, public_sums = _bookkeeping(copy.deepcopy(model), x, y, 0.5)
    for norms, sums in ((hook_norms, hook_sums), (public_norms, public_sums)):
        torch.testing.assert_close(norms, chain_norms, rtol=1e-12, atol=1e-12)
        for got, want in zip(sums, chain_sums, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    _assert_same(model, x, y, 0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_clip_count_compares_as_torch_does(dtype):
    """``count_above`` (the per-step clip count, read with one copy) equals ``int((values > bound).sum())``: the bound
    rounded to the values' precision as torch rounds it (a float32 norm equal to float32(0.3) is not above 0.3),
    NaN never above, infinities, a bound beyond float32's range."""
    values = (torch.rand(500, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2).to(dtype)
    values[:6] = torch.tensor([0.3, float("nan"), float("inf"), -float("inf"), 1.0, 0.0], dtype=torch.float64)
    for bound in (0.3, 1.0, 1, 0.0, 1e-3, 1.5, 1e40, -1e40):
        assert bookkeeping.count_above(values, bound) == int((values > bound).sum())
    assert bookkeeping.count_above(torch.tensor([0.3]), 0.3) == 0  # would be 1 against the float64 bound


def test_summed_cross_entropy_gives_what_per_sample_losses_give():
    """The trainer's CrossEntropyLoss is summed (one 0-d seed for the backward); any other criterion goes through its
    per-sample losses (reduction swapped to 'none'): the same mean loss, norms and clipped sums (float64)."""

    class OtherCrossEntropy(nn.CrossEntropyLoss):
        pass

    torch.manual_seed(8)
    model, _ = make_private_compatible(MODELS["mlp"].build((9,), 4))
    model = model.double()
    x, y = torch.randn(17, 9, dtype=torch.float64) * 2, torch.randint(0, 4, (17,))
    results = []
    for criterion in (nn.CrossEntropyLoss(label_smoothing=0.1), OtherCrossEntropy(label_smoothing=0.1)):
        copy_ = copy.deepcopy(model)
        module = BookkeepingModule(copy_, max_grad_norm=0.4)
        loss = BookkeepingCriterion(module, criterion)(module(x), y)
        assert loss.loss.dim() == (0 if type(criterion) is nn.CrossEntropyLoss else 1)
        assert criterion.reduction == "mean"  # the swap is undone
        mean = loss.item()
        loss.backward()
        results.append((mean, module.per_sample_gradient_norms, [p.grad for p in copy_.parameters()]))
    (mean_a, norms_a, sums_a), (mean_b, norms_b, sums_b) = results
    assert mean_a == pytest.approx(mean_b, rel=1e-12)
    assert mean_a == pytest.approx(nn.CrossEntropyLoss(label_smoothing=0.1)(model(x), y).item(), rel=1e-12)
    torch.testing.assert_close(norms_a, norms_b, rtol=1e-12, atol=1e-12)
    for got, want in zip(sums_a, sums_b, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
