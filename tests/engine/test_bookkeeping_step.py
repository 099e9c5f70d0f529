"""The tight optimizer step of book-keeping clipping (dpcore.engine.bookkeeping_step) is Opacus' step, bit for bit."""

from __future__ import annotations

import copy
import types

import numpy as np
import pytest
import torch
from opacus import GradSampleModule
from opacus.accountants import RDPAccountant
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
from opacus.optimizers.ddpoptimizer_fast_gradient_clipping import DistributedDPOptimizerFastGradientClipping
from opacus.utils.uniform_sampler import DistributedUniformWithReplacementSampler, UniformWithReplacementSampler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dpcore import TrainConfig, train
from dpcore.engine.bookkeeping import BookkeepingCriterion, BookkeepingModule
from dpcore.engine.bookkeeping_step import install_fast_sampling, install_fast_step

SAMPLE_RATE = 0.05


def _model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(7, 5), nn.GroupNorm(1, 5), nn.ReLU(), nn.Linear(5, 3))


def _dp_optimizer(model: nn.Module, *, fast: bool, noise_multiplier: float, inner: str = "sgd",
                  seed: int = 11) -> tuple[DPOptimizerFastGradientClipping, RDPAccountant]:
    """A ``DPOptimizerFastGradientClipping`` on ``model`` with its own generator and an accountant hook."""
    params = [p for p in model.parameters() if p.requires_grad]
    base = (torch.optim.SGD(params, lr=0.1, momentum=0.9) if inner == "sgd" else torch.optim.Adam(params, lr=0.01))
    optimizer = DPOptimizerFastGradientClipping(base, noise_multiplier=noise_multiplier, max_grad_norm=0.7,
                                                expected_batch_size=13, generator=torch.Generator().manual_seed(seed))
    accountant = RDPAccountant()
    optimizer.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=SAMPLE_RATE))
    if fast:
        assert install_fast_step(optimizer)
    return optimizer, accountant


def _run(fast: bool, *, noise_multiplier: float, inner: str, skips: list[bool]) -> dict:
    """Feed the same clipped sums to Opacus' step and to ours; ``skips`` marks physical batches that only accumulate
    (as ``BatchMemoryManager`` signals them). Returns the parameters, the last noisy gradients, the generator's next
    draw, the accountant's history and the number of completed steps."""
    model = _model()
    optimizer, accountant = _dp_optimizer(model, fast=fast, noise_multiplier=noise_multiplier, inner=inner)
    assert ("step" in vars(optimizer)) == fast  # Opacus' own step otherwise
    sums = torch.Generator().manual_seed(5)
    completed, last_grads = 0, None
    for skip in skips:
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=sums)  # a fresh clipped sum, as clipped_backward makes
        if skip:
            optimizer.signal_skip_step(do_skip=True)
        optimizer.step()
        if not optimizer._is_last_step_skipped:
            completed += 1
            last_grads = [p.grad.clone() for p in model.parameters()]
        optimizer.zero_grad(set_to_none=True)
    return {"params": [p.detach().clone() for p in model.parameters()], "grads": last_grads,
            "next_draw": torch.randn(4, generator=optimizer.generator), "history": list(accountant.history),
            "completed": completed}


@pytest.mark.parametrize("noise_multiplier", [1.3, 0.0])
@pytest.mark.parametrize("inner", ["sgd", "adam"])
def test_fast_step_is_opacus_step_bit_for_bit(noise_multiplier, inner):
    """Same generator, same clipped sums, physical batches accumulated in between: the same noisy gradients, the same
    updated parameters, the generator left in the same state, the accountant told once per completed step."""
    skips = [False, True, True, False, True, False, False]
    ours = _run(True, noise_multiplier=noise_multiplier, inner=inner, skips=skips)
    opacus = _run(False, noise_multiplier=noise_multiplier, inner=inner, skips=skips)
    for got, want in zip(ours["grads"] + ours["params"], opacus["grads"] + opacus["params"], strict=True):
        assert torch.equal(got, want)
    assert torch.equal(ours["next_draw"], opacus["next_draw"])
    assert ours["completed"] == opacus["completed"] == 4
    assert ours["history"] == opacus["history"] == [(noise_multiplier, SAMPLE_RATE, 4)]


def test_accountant_counts_every_optimizer_step_in_training():
    """Through ``train()`` with physical batches: the accountant's step count equals the logical steps taken."""
    cfg = TrainConfig(dataset="synthetic", noise_multiplier=1.0, max_grad_norm=1.0, epochs=2, batch_size=64,
                      physical_batch_size=16, seed=1, reproducible=True, grad_sample_mode="bookkeeping")
    run = train(cfg)
    assert run.grad_sample_mode == "bookkeeping"
    assert sum(steps for _, _, steps in run.accountant_history) == run.steps == len(run.history)


def test_noise_has_std_sigma_c_over_b_from_the_optimizers_generator():
    """Zero clipped sums: each noisy gradient is N(0, (sigma C / B)^2), drawn from the optimizer's generator only
    (torch's global generator is untouched; another generator seed gives other noise)."""
    model = nn.Linear(300, 200)
    grads = {}
    for seed in (1, 2):
        optimizer, _ = _dp_optimizer(model, fast=True, noise_multiplier=1.7, seed=seed)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        global_state = torch.get_rng_state()
        optimizer.step()
        assert torch.equal(torch.get_rng_state(), global_state)
        grads[seed] = torch.cat([p.grad.flatten() for p in model.parameters()])
        optimizer.zero_grad(set_to_none=True)
    noise = grads[1].double()
    expected = 1.7 * 0.7 / 13
    assert abs(float(noise.mean())) < 4 * expected / np.sqrt(noise.numel())
    assert abs(float(noise.std()) / expected - 1) < 0.02  # 60k draws: the std estimate is good to ~0.3 %
    assert not torch.equal(grads[1], grads[2])


def test_noise_free_step_gives_opacus_clipped_mean():
    """Book-keeping backward + our step at sigma = 0 give Opacus' hooks-mode clipped sum / B (to 1e-5, float64)."""
    torch.manual_seed(7)
    model = _model().double()
    x, y = torch.randn(13, 7, dtype=torch.float64) * 3, torch.randint(0, 3, (13,))
    reference = GradSampleModule(copy.deepcopy(model))
    ref_opt = DPOptimizer(torch.optim.SGD(reference.parameters(), lr=0.1), noise_multiplier=0.0, max_grad_norm=0.7,
                          expected_batch_size=13)
    nn.functional.cross_entropy(reference(x), y).backward()
    ref_opt.pre_step()
    module = BookkeepingModule(model, max_grad_norm=0.7)
    optimizer, _ = _dp_optimizer(model, fast=True, noise_multiplier=0.0)
    BookkeepingCriterion(module, nn.CrossEntropyLoss())(module(x), y).backward()
    optimizer.step()
    for got, want in zip([p.grad for p in model.parameters()], [p.grad for p in reference.parameters()], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_other_optimizers_keep_opacus_step():
    """Distributed and secure-mode optimizers, and parameters of mixed dtypes, are left to Opacus."""
    model = _model()
    distributed = DistributedDPOptimizerFastGradientClipping.__new__(DistributedDPOptimizerFastGradientClipping)
    assert not install_fast_step(distributed)
    secure = DPOptimizerFastGradientClipping(torch.optim.SGD(model.parameters(), lr=0.1), noise_multiplier=1.0,
                                             max_grad_norm=1.0, expected_batch_size=4, secure_mode=True)
    assert not install_fast_step(secure)
    mixed = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2).double())
    plain = DPOptimizerFastGradientClipping(torch.optim.SGD(mixed.parameters(), lr=0.1), noise_multiplier=1.0,
                                            max_grad_norm=1.0, expected_batch_size=4)
    assert not install_fast_step(plain)
    assert "step" not in vars(plain) and "step" not in vars(secure)


def test_a_steps_gradients_stay_as_they_were_through_the_next_step():
    """The noisy gradients live in two buffers used in turn: step k's ``p.grad`` tensors are unchanged by step k+1."""
    model = _model()
    optimizer, _ = _dp_optimizer(model, fast=True, noise_multiplier=1.0)
    kept = []
    for _ in range(4):
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        optimizer.step()
        grads = [p.grad for p in model.parameters()]
        kept.append((grads, [g.clone() for g in grads]))
        optimizer.zero_grad(set_to_none=True)
        if len(kept) > 1:
            previous, values = kept[-2]
            assert all(torch.equal(a, b) for a, b in zip(previous, values, strict=True))
            assert kept[-1][0][0].data_ptr() != previous[0].data_ptr()


def test_cnn_bookkeeping_run_equals_ghost_run():
    """The CNN (convolutions, GroupNorm on feature maps) over several steps: the same accounting, batches and, up to
    float rounding, the same trained weights as Opacus' ghost clipping with the same noise draws."""
    cfg = TrainConfig(dataset="digits", model="cnn", noise_multiplier=1.0, max_grad_norm=1.0, epochs=1,
                      batch_size=128, seed=3, reproducible=True)
    ghost = train(cfg.replace(grad_sample_mode="ghost"))
    ours = train(cfg.replace(grad_sample_mode="bookkeeping"))
    assert ours.grad_sample_mode == "bookkeeping" and ours.steps == ghost.steps > 3
    assert ours.accountant_history == ghost.accountant_history
    np.testing.assert_array_equal(ours.history["batch_size"], ghost.history["batch_size"])
    for a, b in zip(ours.model.state_dict().values(), ghost.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_a_second_step_without_zero_grad_is_refused_as_opacus_does():
    """Stepping twice on the same (already noisy) gradients would add noise twice: refused, as Opacus refuses."""
    for fast in (True, False):
        model = _model()
        optimizer, _ = _dp_optimizer(model, fast=fast, noise_multiplier=1.0)
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        optimizer.step()
        with pytest.raises(ValueError, match="haven't been cleared"):
            optimizer.step()


@pytest.mark.parametrize("sample_rate", [0.08, 1 / 3, 0.9])
def test_fast_sampling_gives_opacus_batches_index_for_index(sample_rate):
    """The numpy index search of ``install_fast_sampling`` yields Opacus' Poisson batches from the same generator,
    index for index, and leaves the generator where Opacus' sampler leaves it."""
    batches, next_draws = {}, {}
    for fast in (False, True):
        generator = torch.Generator().manual_seed(9)
        sampler = UniformWithReplacementSampler(num_samples=500, sample_rate=sample_rate, generator=generator,
                                                steps=150)
        if fast:
            assert install_fast_sampling(DataLoader(TensorDataset(torch.arange(500.0)), batch_sampler=sampler))
            assert isinstance(sampler, UniformWithReplacementSampler) and len(sampler) == 150
        batches[fast] = list(sampler)
        next_draws[fast] = torch.rand(4, generator=generator)
    assert batches[True] == batches[False] and len(batches[True]) == 150
    assert any(batches[True]) and all(isinstance(i, int) for batch in batches[True] for i in batch)
    assert torch.equal(next_draws[True], next_draws[False])


def test_fast_sampling_leaves_other_samplers_alone():
    """A plain loader, a distributed Poisson sampler or no loader at all: nothing changes."""
    plain = DataLoader(TensorDataset(torch.arange(10.0)), batch_size=4)
    distributed = DistributedUniformWithReplacementSampler.__new__(DistributedUniformWithReplacementSampler)
    for loader in (plain, types.SimpleNamespace(batch_sampler=distributed), None):  # (no process group here)
        assert not install_fast_sampling(loader)
    assert type(distributed) is DistributedUniformWithReplacementSampler
