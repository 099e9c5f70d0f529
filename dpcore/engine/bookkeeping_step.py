"""The optimizer step of book-keeping clipping: Opacus' ``DPOptimizerFastGradientClipping.step`` in one tight pass.

``install_fast_step(optimizer)`` replaces ``step`` and ``zero_grad`` of a plain (not distributed, not secure-mode)
``DPOptimizerFastGradientClipping`` by functions doing the same maths with less per-step overhead (measured with
``bench/bench_step_time.py``; on the registry's MLP the Python bookkeeping of Opacus' step cost about as much as the
noise itself):

- accumulation keeps the clipped sums ``p.grad`` by reference (``clipped_backward`` makes fresh tensors) and adds a
  later physical batch's sums in one ``_foreach_add_``;
- the noisy gradients live in ONE flat buffer per step, split into views shaped like the parameters: each view gets
  ``normal_(0, sigma C)`` from the optimizer's generator (the secret noise stream of the run), in Opacus' parameter
  order, which is exactly Opacus' ``torch.normal`` draw per parameter (the same values, bit for bit: tested); the
  clipped sums are added in one ``_foreach_add_`` and the whole buffer is divided by the expected batch size in one
  op, so ``p.grad = (summed + noise) / B`` is Opacus' value bit for bit;
- the accountant's step hook is called once per completed logical step, exactly where Opacus calls it (after the
  noise, before the inner optimizer's step); a step skipped by ``BatchMemoryManager`` only accumulates;
- the wrapped optimizer's own ``step`` (SGD, Adam, ...) does the update, as in Opacus.

Secure mode, other optimizer classes (the distributed one adds noise on one rank only), mixed parameter dtypes or
devices, and a call with a closure keep Opacus' own code.

``install_fast_sampling(loader)`` does the same for the Poisson sampler of Opacus' ``DPDataLoader``: the same uniform
draws from the same generator, compared with the sample rate in float32 as torch compares them, but the indices
found by numpy (two calls instead of four tensor ops): the same batches, index for index (tested).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from opacus.optimizers import DPOptimizerFastGradientClipping
from opacus.utils.uniform_sampler import UniformWithReplacementSampler


def install_fast_step(optimizer: torch.optim.Optimizer) -> bool:
    """Give a plain ``DPOptimizerFastGradientClipping`` the tight ``step`` / ``zero_grad``; True when installed.

    Returns False (and changes nothing) for any other optimizer class, for secure mode, and when the parameters
    do not share one dtype and device. The parameter list is fixed here: parameter groups added later are not seen.
    """
    if type(optimizer) is not DPOptimizerFastGradientClipping or optimizer.secure_mode:
        return False
    params = list(optimizer.params)
    if not params or len({(p.dtype, p.device) for p in params}) != 1:
        return False
    optimizer._bk_params = params
    layout, start = [], 0
    for p in params:  # each parameter's (shape, contiguous strides, offset) in the flat buffer
        layout.append((p.shape, _contiguous_strides(p.shape), start))
        start += p.numel()
    optimizer._bk_layout = layout
    optimizer._bk_numel = start
    optimizer._bk_summed = None
    optimizer._bk_buffers = []  # two (flat buffer, parameter views), used in turn
    optimizer._bk_cleared = True  # zero_grad since the last completed step (Opacus' "processed" check)
    optimizer.step = types.MethodType(_fast_step, optimizer)
    optimizer.zero_grad = types.MethodType(_fast_zero_grad, optimizer)
    return True


def _contiguous_strides(shape: torch.Size) -> tuple[int, ...]:
    """The strides (in elements) of a contiguous tensor of ``shape``."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _noisy_scaled(self: Any, summed: list[torch.Tensor]) -> list[torch.Tensor]:
    """``(summed + N(0, sigma^2 C^2)) / expected batch size`` per parameter, as views of one flat buffer.

    Two buffers with their views (``as_strided``) are kept and used in turn, so a step's ``p.grad`` stays as it was
    through the next step (the trainer sets ``p.grad`` to None after each step anyway) and no step allocates or
    makes views. One ``normal_`` per parameter view, in order, from ``self.generator``: the same values as Opacus'
    ``_generate_noise`` (``torch.normal`` of the parameter's shape); no draw at all when the std is 0 (as Opacus).
    """
    first, buffers = self._bk_params[0], self._bk_buffers
    if buffers and (buffers[0][0].dtype != first.dtype or buffers[0][0].device != first.device):
        buffers.clear()  # the model moved or changed dtype
    if len(buffers) < 2:
        flat = torch.empty(self._bk_numel, dtype=first.dtype, device=first.device)
        entry = (flat, [flat.as_strided(shape, strides, offset) for shape, strides, offset in self._bk_layout])
    else:
        entry = buffers.pop()  # the older one: the gradients of two steps ago
    buffers.insert(0, entry)
    flat, views = entry
    std = getattr(self, "_adjusted_noise_multiplier", self.noise_multiplier) * self.max_grad_norm
    if std == 0:
        flat.zero_()
    else:
        generator = self.generator
        for view in views:
            view.normal_(0, std, generator=generator)
    torch._foreach_add_(views, summed)
    if self.loss_reduction == "mean":
        flat.div_(self.expected_batch_size * self.accumulated_iterations)
    return views


def _fast_step(self: Any, closure: Callable[[], float] | None = None) -> float | None:
    """Opacus' ``pre_step`` + inner ``step``: accumulate, then (unless this physical batch is skipped) noise, scale,
    accountant hook and the wrapped optimizer's update. Returns what the wrapped optimizer's ``step`` returns."""
    if closure is not None:
        with torch.enable_grad():
            closure()
    if not self._bk_cleared:  # the same refusal as Opacus': these gradients already carry noise
        raise ValueError("Gradients haven't been cleared since the last optimizer step. In order to obtain privacy "
                         "guarantees you must call optimizer.zero_grad() on each step")
    params = self._bk_params
    grads = [p.grad for p in params]
    summed = self._bk_summed
    if summed is None:
        summed = grads  # fresh tensors from clipped_backward: nothing else writes to them
    else:
        with torch.no_grad():
            torch._foreach_add_(summed, grads)
    queue = self._step_skip_queue
    if queue and queue.pop(0):  # BatchMemoryManager: more physical batches of this logical step follow
        self._bk_summed = summed
        for p in params:
            p.grad = None
        self._is_last_step_skipped = True
        return None
    self._bk_summed = None
    for p, grad in zip(params, _noisy_scaled(self, summed), strict=True):  # no graph: nothing here requires grad
        p.grad = grad
    if self.step_hook:
        self.step_hook(self)
    self._is_last_step_skipped = False
    self._bk_cleared = False
    return self.original_optimizer.step()


def _fast_zero_grad(self: Any, set_to_none: bool = False) -> None:
    """Opacus' ``zero_grad``: drops the accumulated sums unless the last step was skipped, then the inner one's."""
    if not self._is_last_step_skipped:
        self._bk_summed = None
    self._bk_cleared = True
    self.original_optimizer.zero_grad(set_to_none)


class _NumpyPoissonSampler(UniformWithReplacementSampler):
    """Opacus' ``UniformWithReplacementSampler`` with the indices of each draw found by numpy (same draws, same
    batches). Only ever made by changing the class of an existing sampler (``install_fast_sampling``)."""

    def __iter__(self) -> Iterator[list[int]]:
        rate = np.float32(self.sample_rate)  # torch compares the float32 draws with the rate rounded to float32
        for _ in range(self.steps):
            yield np.flatnonzero(torch.rand(self.num_samples, generator=self.generator).numpy() < rate).tolist()


def install_fast_sampling(loader: Any) -> bool:
    """Give the Poisson sampler of an Opacus ``DPDataLoader`` (``loader.batch_sampler``, exactly a
    ``UniformWithReplacementSampler``) the numpy index search; True when done. A DataLoader's sampler cannot be
    replaced once built, so the sampler's class is changed in place (a subclass that only overrides ``__iter__``)."""
    sampler = getattr(loader, "batch_sampler", None)
    if type(sampler) is not UniformWithReplacementSampler:
        return False
    sampler.__class__ = _NumpyPoissonSampler
    return True


__all__ = ["install_fast_sampling", "install_fast_step"]
