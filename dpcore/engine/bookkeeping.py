"""Book-keeping clipping: a DP-SGD step with ONE forward and ONE backward pass.

Bu et al., "Differentially private optimization on large model at small cost" (ICML 2023).
The forward keeps each supported layer's input activation ``a`` and output ``z`` (a plain ``nn.Sequential`` is
run layer by layer here, anything else through forward hooks); one backward of the summed loss with respect
to the outputs (the engine call behind ``torch.autograd.grad``) gives every layer's per-sample output gradient
``g`` (no weight gradient is formed, no second backward). From (a, g) each layer gives its per-sample gradient norms
and its clipped gradient sum cheaply (Linear, Conv2d, GroupNorm, LayerNorm: ``bookkeeping_layers``).

The per-sample total norms give the clip factors ``c_i = min(1, C / (|g_i| + 1e-6))`` (Opacus'
formula), and each layer's clipped SUM gradient is one weighted matrix product, e.g. ``(c * g)^T a``
for a Linear weight. That sum goes to ``p.grad``; noise, the division by the expected batch size,
the accountant and Poisson sampling are Opacus' own: the trainer builds them with
``PrivacyEngine.make_private(grad_sample_mode="ghost")`` and swaps only the gradient computation
(``use_bookkeeping``), so the noise is N(0, sigma^2 C^2) from the run's noise generator exactly as in ghost mode
(the same draws, bit for bit); a plain optimizer does Opacus' step in one tight pass (``bookkeeping_step``).

Measured with ``bench/bench_step_time.py`` on a shared 2-core CPU (see the README): the unfolding, the second
GroupNorm normalisation and the convolution weight-gradient kernel were the largest costs of the CNN step; on
the small MLP each op's fixed cost dominates, so fewer ops and less Python per step is what counts there (a summed
cross-entropy and a kept seed of 1, no detach of the kept activations, the layers' parameters read once, one
``vector_norm`` over every layer's norm pieces, no ``torch.no_grad`` object, the clip count read with one copy
(``count_above``), Opacus' optimizer and sampler bookkeeping replaced by ``bookkeeping_step``); what remains is
mostly the noise itself (one Gaussian per parameter, ~55 us of a ~0.8 ms step).

Only models whose every trainable parameter sits directly in a supported layer are accepted
(``bookkeeping_supported``); the trainer falls back to Opacus for anything else.
"""

from __future__ import annotations

import math
import struct
import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dpcore.engine.bookkeeping_layers import (
    Maker,
    _layer_params,
    _layer_terms,
    _Record,
    _saved_group_stats,
    _total_norms,
    _Workspace,
)
from dpcore.engine.bookkeeping_step import install_fast_sampling, install_fast_step

try:  # what torch.autograd.grad calls after ~10 us of argument checks this path does not need (its inputs are fixed)
    from torch.autograd.graph import _engine_run_backward
except ImportError:  # another torch: the public function
    _engine_run_backward = None

SUPPORTED_LAYERS = (nn.Linear, nn.Conv2d, nn.GroupNorm, nn.LayerNorm)
_EPS = 1e-6  # Opacus' clip factor: C / (norm + 1e-6), capped at 1


def count_above(values: torch.Tensor, bound: float) -> int:
    """How many entries of the 1-d ``values`` are greater than ``bound``: ``int((values > bound).sum())``, compared the
    same way (a float32 tensor against ``bound`` rounded to float32), from one copy to Python instead of three ops."""
    if values.dtype == torch.float32:
        try:
            bound = struct.unpack("f", struct.pack("f", bound))[0]
        except OverflowError:  # beyond float32: torch rounds it to infinity
            bound = math.copysign(math.inf, bound)
    elif values.dtype != torch.float64:
        return int((values > bound).sum())
    return len([value for value in values.tolist() if value > bound])


def _trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters(recurse=False) if p.requires_grad]


def _layer_supported(module: nn.Module) -> bool:
    if not isinstance(module, SUPPORTED_LAYERS):
        return False
    if isinstance(module, nn.Conv2d):
        return module.groups == 1 and module.padding_mode == "zeros" and not isinstance(module.padding, str)
    return True


def bookkeeping_supported(model: nn.Module) -> bool:
    """True when every trainable parameter of ``model`` belongs directly to a layer this path knows.

    Supported: Linear, Conv2d (groups=1, zero padding given as numbers), GroupNorm, LayerNorm. Shared
    parameters (one tensor in two layers) and models without trainable parameters are not supported.
    """
    seen: set[int] = set()
    for module in model.modules():
        params = _trainable(module)
        if params and not _layer_supported(module):
            return False
        for param in module.parameters(recurse=False):
            if id(param) in seen:
                return False
            seen.add(id(param))
    return bool(seen) and any(p.requires_grad for p in model.parameters())


# ---------------------------------------------------------------------- module and loss
def _output_grads(loss: torch.Tensor, outputs: list[torch.Tensor],
                  ones: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    """The gradient of the summed losses with respect to each of ``outputs`` (None where the loss does not reach it),
    as ``torch.autograd.grad`` gives it. ``loss`` is the sum of the per-sample losses (0-d) or the per-sample losses
    (then without a sum node: each gets an output gradient of 1); ``ones``: ones shaped like ``loss`` (only read)."""
    if _engine_run_backward is None:
        return torch.autograd.grad(loss, outputs, grad_outputs=ones, allow_unused=True)
    return _engine_run_backward((loss,), (ones,), False, False, tuple(outputs), True, accumulate_grad=False)


def _sequential_chain(module: nn.Module) -> list[nn.Module] | None:
    """The layers a plain ``nn.Sequential`` calls one after the other (plain nested ones flattened), or None where
    ``module`` is anything else or a container has hooks of its own (its forward must then run as it is)."""
    if type(module) is not nn.Sequential or any(
            (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks, module._backward_pre_hooks)):
        return None
    chain: list[nn.Module] = []
    for child in module:
        inner = _sequential_chain(child) if type(child) is nn.Sequential else [child]
        if inner is None:
            return None
        chain += inner
    return chain


class BookkeepingModule(nn.Module):
    """Wraps a model so that its supported layers record (input, output) on every training forward.

    A plain ``nn.Sequential`` (every registry model) is run layer by layer here, recording the supported layers'
    calls directly; any other model records them through forward hooks (the same records; hooks cost more per call).
    ``per_sample_gradient_norms`` holds the unclipped per-sample gradient norms of the last backward
    (as Opacus' ghost-clipping module does). ``_close()`` removes the hooks.
    """

    def __init__(self, module: nn.Module, *, max_grad_norm: float) -> None:
        super().__init__()
        if not bookkeeping_supported(module):
            raise ValueError("book-keeping clipping does not support every trainable layer of this model")
        self._module = module
        self.max_grad_norm = float(max_grad_norm)
        self.per_sample_gradient_norms: torch.Tensor | None = None
        self._records: list[_Record] = []
        self._workspace = _Workspace()
        self._constants: dict[tuple[float, torch.dtype, torch.device], torch.Tensor] = {}
        self._trainable = [p for p in module.parameters() if p.requires_grad]
        self._params = {id(layer): _layer_params(layer) for layer in module.modules() if _trainable(layer)}
        chain = _sequential_chain(module)
        self._chain = None if chain is None else [(layer, self._params.get(id(layer)), isinstance(layer, nn.GroupNorm))
                                                  for layer in chain]  # (layer, its (weight, bias) if recorded, ...)
        recorded = [id(layer) for layer, params, _ in self._chain or () if params]
        self._calls_unique = chain is not None and len(set(recorded)) == len(recorded)  # else checked every step
        self._handles = [] if chain is not None else [
            layer.register_forward_hook(self._capture) for layer in module.modules() if _trainable(layer)]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped model's output; starts a fresh record of layer calls."""
        self._records.clear()
        if self._chain is None:
            return self._module(*args, **kwargs)
        (x,) = (*args, *kwargs.values())  # nn.Sequential.forward takes exactly one input
        records = self._records
        for layer, params, group_norm in self._chain:
            y = layer(x)
            if params and layer.training and y.requires_grad:  # as _capture
                records.append(_Record(layer, x, y, _saved_group_stats(y) if group_norm else None, *params))
            x = y
        return x

    def _capture(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        """Record a training call (not one under no_grad). The input is kept as it is: read only under no_grad."""
        if module.training and output.requires_grad:
            stats = _saved_group_stats(output) if isinstance(module, nn.GroupNorm) else None
            self._records.append(_Record(module, inputs[0], output, stats, *self._params[id(module)]))

    def _constant(self, value: float, like: torch.Tensor) -> torch.Tensor:
        """``value`` as a 0-d tensor of ``like``'s dtype and device, made once and kept (never written to): e.g. the
        clipping bound (one division op instead of two) and the backward's seed of 1."""
        key = (value, like.dtype, like.device)
        constant = self._constants.get(key)
        if constant is None:
            constant = self._constants[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
        return constant

    def _close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._chain = None
        self._calls_unique = False
        self._records = []
        self._workspace = _Workspace()

    def clipped_backward(self, loss: torch.Tensor, *, batch_size: int | None = None) -> torch.Tensor:
        """One backward: set every trainable ``p.grad`` to the clipped per-sample gradient SUM.

        ``loss`` is the sum (0-d) of the per-sample losses of the last forward, or the (B,) per-sample losses;
        ``batch_size`` B (read from ``loss`` when it is per-sample). Returns the per-sample gradient norms before
        clipping (also kept in ``per_sample_gradient_norms``).
        """
        records, self._records = self._records, []
        if not self._calls_unique and len({id(r.module) for r in records}) != len(records):
            raise RuntimeError("book-keeping clipping needs each layer called once per forward")
        ones = self._constant(1.0, loss) if loss.dim() == 0 else torch.ones_like(loss)
        grads = _output_grads(loss, [r.output for r in records], ones) if records else ()
        makers: list[Maker] = []
        pieces: list[torch.Tensor] = []
        grad_enabled = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)  # torch.no_grad() without its ~2 us of Python: the activations need no graph
        try:
            for record, grad in zip(records, grads, strict=True):
                if grad is not None:
                    make, layer_pieces = _layer_terms(record, grad, self._workspace)
                    makers.append(make)
                    pieces += layer_pieces
            norms = _total_norms(pieces, loss.shape[0] if batch_size is None else batch_size, loss)
            bound = self._constant(self.max_grad_norm, norms)
            factors = torch.div(bound, norms + _EPS).clamp_(max=1.0)  # C / (norm + eps), <= 1
            for make in makers:
                for param, grad in make(factors):
                    param.grad = grad if grad.dtype == param.dtype else grad.to(param.dtype)
        finally:
            torch._C._set_grad_enabled(grad_enabled)
        if len(makers) != len(records):  # a layer the loss did not reach this time gets a zero gradient
            covered = {id(param) for record, grad in zip(records, grads, strict=True) if grad is not None
                       for param in _trainable(record.module)}
            for param in self._trainable:
                if id(param) not in covered:
                    param.grad = torch.zeros_like(param)
        object.__setattr__(self, "per_sample_gradient_norms", norms)  # skips nn.Module's slower __setattr__
        return norms


class BookkeepingLoss:
    """The loss ``BookkeepingCriterion`` returns: ``.item()`` is the mean loss, ``.backward()`` the clipped backward.

    ``loss`` is the sum (0-d) of the ``batch_size`` per-sample losses, or the (B,) per-sample losses themselves.
    """

    def __init__(self, module: BookkeepingModule, loss: torch.Tensor, *, batch_size: int | None = None) -> None:
        self.module = module
        self.loss = loss
        self.batch_size = int(loss.shape[0]) if batch_size is None else batch_size

    def detach(self) -> torch.Tensor:
        """The mean per-sample loss, detached (0-d)."""
        loss = self.loss.detach()  # detached first: no autograd node for the mean
        return loss / self.batch_size if loss.dim() == 0 else loss.mean()

    def item(self) -> float:
        """The mean per-sample loss as a float (NaN for an empty batch)."""
        if self.loss.dim() != 0:
            return float(self.detach().item())
        return self.loss.item() / self.batch_size if self.batch_size else math.nan

    def backward(self) -> None:
        """Fill ``p.grad`` with the clipped per-sample gradient sums (see ``BookkeepingModule.clipped_backward``)."""
        self.module.clipped_backward(self.loss, batch_size=self.batch_size)


class BookkeepingCriterion:
    """Wraps a mean-reduced criterion (e.g. ``nn.CrossEntropyLoss()``) to return a ``BookkeepingLoss``."""

    def __init__(self, module: BookkeepingModule, criterion: nn.Module) -> None:
        self.module = module
        self.criterion = criterion

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> BookkeepingLoss:
        """The per-sample losses of ``output`` against ``target``, wrapped for the clipped backward."""
        crit = self.criterion
        if type(crit) is nn.CrossEntropyLoss:  # the trainer's loss: called directly, summed (the same output gradients
            return BookkeepingLoss(self.module, F.cross_entropy(  # as per-sample losses each seeded with 1)
                output, target, weight=crit.weight, ignore_index=crit.ignore_index, reduction="sum",
                label_smoothing=crit.label_smoothing), batch_size=output.shape[0])
        reduction = self.criterion.reduction
        self.criterion.reduction = "none"
        try:
            loss_per_sample = self.criterion(output, target)
        finally:
            self.criterion.reduction = reduction
        return BookkeepingLoss(self.module, loss_per_sample)


def _accumulate_by_reference(self: Any) -> None:
    """``DPOptimizerFastGradientClipping.accumulate`` without the copy: the first physical batch's ``p.grad``
    becomes ``p.summed_grad`` itself and ``p.grad`` is released, so nothing else holds the summed tensor
    (``clipped_backward`` makes a fresh tensor for every ``p.grad``; ``add_noise`` sets a new ``p.grad``)."""
    for p in self.params:
        if p.summed_grad is not None:
            p.summed_grad.add_(p.grad)
        else:
            p.summed_grad = p.grad  # made by clipped_backward: no graph, nothing else holds it
        p.grad = None


def use_bookkeeping(ghost_module: nn.Module, *, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    max_grad_norm: float, data_loader: Any = None) -> tuple[BookkeepingModule, BookkeepingCriterion]:
    """Swap an Opacus ghost-clipping wrapper for book-keeping clipping; returns (module, criterion).

    ``ghost_module`` is the module ``PrivacyEngine.make_private(grad_sample_mode="ghost")`` returned:
    its hooks are removed (``_close``) and the model inside is wrapped by ``BookkeepingModule``. The
    optimizer (``DPOptimizerFastGradientClipping``: noise, scaling, accountant hook) and the Poisson
    data loader from the same call are kept as they are (its ``accumulate`` skips a copy, see
    ``_accumulate_by_reference``; a plain, not distributed, optimizer gets the same step in one tight pass, see
    ``bookkeeping_step.install_fast_step``). ``criterion`` is the plain, mean-reduced loss. The Poisson sampler of
    ``data_loader`` (the ``DPDataLoader`` from the same call), if given, finds its batches faster
    (``bookkeeping_step.install_fast_sampling``: the same batches).
    """
    optimizer.accumulate = types.MethodType(_accumulate_by_reference, optimizer)
    install_fast_step(optimizer)  # subclasses (distributed) and secure mode keep Opacus' step
    install_fast_sampling(data_loader)  # a distributed sampler keeps Opacus' code
    inner = ghost_module._module
    ghost_module._close()
    module = BookkeepingModule(inner, max_grad_norm=max_grad_norm)
    return module, BookkeepingCriterion(module, criterion)
