"""Book-keeping clipping: a DP-SGD step with ONE forward and ONE backward pass.

Bu et al., "Differentially private optimization on large model at small cost" (ICML 2023).
Forward hooks keep each supported layer's input activation ``a`` and output ``z``; one
``torch.autograd.grad`` of the summed per-sample losses with respect to the outputs gives every
layer's per-sample output gradient ``g`` (no weight gradient is formed, no second backward).
From (a, g) each layer gives its per-sample squared gradient norms cheaply:

- Linear with one row per sample: ``|a_i|^2 |g_i|^2`` (weight) and ``|g_i|^2`` (bias);
  with a sequence dimension the ghost-norm trick ``sum (a_i a_i^T) * (g_i g_i^T)`` or the
  per-sample gradients themselves, whichever is cheaper;
- Conv2d: the same on the unfolded input (``F.unfold``);
- GroupNorm / LayerNorm affine parameters: the per-sample gradients are formed directly.

The per-sample total norms give the clip factors ``c_i = min(1, C / (|g_i| + 1e-6))`` (Opacus'
formula), and each layer's clipped SUM gradient is one weighted matrix product, e.g. ``(c * g)^T a``
for a Linear weight. That sum goes to ``p.grad``; noise, the division by the expected batch size,
the accountant and Poisson sampling are Opacus' own: the trainer builds them with
``PrivacyEngine.make_private(grad_sample_mode="ghost")`` and swaps only the gradient computation
(``use_bookkeeping``), so ``DPOptimizerFastGradientClipping`` adds N(0, sigma^2 C^2) from the run's
noise generator exactly as in ghost mode.

Only models whose every trainable parameter sits directly in a supported layer are accepted
(``bookkeeping_supported``); the trainer falls back to Opacus for anything else.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED_LAYERS = (nn.Linear, nn.Conv2d, nn.GroupNorm, nn.LayerNorm)
_EPS = 1e-6  # Opacus' clip factor: C / (norm + 1e-6), capped at 1


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


# ---------------------------------------------------------------------- per-layer maths
@dataclass
class _Record:
    """One supported layer's call in the current forward: its input activation and its output."""

    module: nn.Module
    activation: torch.Tensor
    output: torch.Tensor


def _as_rows(a: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(activation, output gradient) of a Linear as (B, T, d_in) and (B, T, d_out)."""
    batch = a.shape[0]
    return a.reshape(batch, -1, a.shape[-1]), g.reshape(batch, -1, g.shape[-1])


def _matrix_norms_sq(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-sample squared Frobenius norms of sum_t g[i,t]^T a[i,t], for a (B, T, d_in), g (B, T, d_out)."""
    if a.shape[1] == 1:
        return a[:, 0].square().sum(1) * g[:, 0].square().sum(1)
    steps, d_in, d_out = a.shape[1], a.shape[2], g.shape[2]
    if steps * steps <= d_in * d_out:  # ghost norm: <a a^T, g g^T> per sample
        return (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(g, g.transpose(1, 2))).sum((1, 2))
    return torch.bmm(g.transpose(1, 2), a).square().sum((1, 2))


Grads = list[tuple[nn.Parameter, torch.Tensor]]
Maker = Callable[[torch.Tensor], Grads]  # clip factors (B,) -> [(parameter, its clipped gradient sum)]


def _trainable_or_none(param: nn.Parameter | None) -> nn.Parameter | None:
    return param if param is not None and param.requires_grad else None


def _dense_linear(module: nn.Linear, a: torch.Tensor, g: torch.Tensor) -> tuple[Maker, torch.Tensor]:
    """Linear on (B, d_in) rows: per-sample norms^2 |a_i|^2 |g_i|^2 + |g_i|^2, sums (c g)^T a and c^T g."""
    weight, bias = _trainable_or_none(module.weight), _trainable_or_none(module.bias)
    g_sq = g.square().sum(1)
    if weight is not None:
        scale = a.square().sum(1)
        norms_sq = g_sq * (scale + 1.0) if bias is not None else g_sq * scale
    else:
        norms_sq = g_sq

    def make(c: torch.Tensor) -> Grads:
        weighted = g * c[:, None]
        grads: Grads = [] if weight is None else [(weight, weighted.T @ a)]
        return grads if bias is None else [*grads, (bias, weighted.sum(0))]

    return make, norms_sq


def _linear_like(weight: nn.Parameter, bias: nn.Parameter | None, a: torch.Tensor,
                 g: torch.Tensor) -> tuple[Maker, torch.Tensor]:
    """y = a W^T + b on rows a (B, T, d_in), g (B, T, d_out): (maker of clipped sums, per-sample norms^2)."""
    weight, bias = _trainable_or_none(weight), _trainable_or_none(bias)
    norms_sq = torch.zeros(a.shape[0], dtype=g.dtype, device=g.device)
    if weight is not None:
        norms_sq = norms_sq + _matrix_norms_sq(a, g)
    if bias is not None:
        g_sum = g.sum(1)
        norms_sq = norms_sq + g_sum.square().sum(1)

    def make(c: torch.Tensor) -> Grads:
        grads: Grads = []
        if weight is not None:
            weighted = (g * c[:, None, None]).reshape(-1, g.shape[-1])
            grads.append((weight, (weighted.T @ a.reshape(-1, a.shape[-1])).reshape(weight.shape)))
        if bias is not None:
            grads.append((bias, c @ g_sum))
        return grads

    return make, norms_sq


def _norm_layer(module: nn.Module, x: torch.Tensor, g: torch.Tensor) -> tuple[Maker, torch.Tensor]:
    """GroupNorm / LayerNorm: per-sample affine gradients formed directly (they are small)."""
    batch = x.shape[0]
    if isinstance(module, nn.GroupNorm):
        normalized = F.group_norm(x, module.num_groups, eps=module.eps)
        reduce_dims = tuple(range(2, x.dim()))  # per channel: sum over the spatial positions
    else:
        normalized = F.layer_norm(x, module.normalized_shape, eps=module.eps)
        reduce_dims = tuple(range(1, x.dim() - len(module.normalized_shape)))  # leading non-batch dims
    per_sample = [(param, (grads.sum(reduce_dims) if reduce_dims else grads).reshape(batch, -1))
                  for param, grads in ((module.weight, normalized * g), (module.bias, g))
                  if _trainable_or_none(param) is not None]
    norms_sq = (torch.cat([flat for _, flat in per_sample], dim=1) if len(per_sample) > 1
                else per_sample[0][1]).square().sum(1)

    def make(c: torch.Tensor) -> Grads:
        return [(param, (c @ flat).reshape(param.shape)) for param, flat in per_sample]

    return make, norms_sq


def _layer_terms(record: _Record, grad_output: torch.Tensor) -> tuple[Maker, torch.Tensor]:
    """(maker of clipped sums, per-sample squared norms) of one recorded layer call."""
    module, a, g = record.module, record.activation, grad_output
    if isinstance(module, nn.Linear):
        if a.dim() == 2:
            return _dense_linear(module, a, g)
        rows_a, rows_g = _as_rows(a, g)
        return _linear_like(module.weight, module.bias, rows_a, rows_g)
    if isinstance(module, nn.Conv2d):
        return _conv2d(module, a, g)
    return _norm_layer(module, a, g)


def _conv2d(module: nn.Conv2d, x: torch.Tensor, g: torch.Tensor) -> tuple[Maker, torch.Tensor]:
    """Conv2d: norms from the unfolded input (B, L, C_in k k) and g (B, L, C_out) as for a Linear; the clipped
    weight sum from torch's own convolution weight-gradient kernel applied to c * g (no copy of the unfolding)."""
    weight, bias = _trainable_or_none(module.weight), _trainable_or_none(module.bias)
    batch, channels = g.shape[0], g.shape[1]
    norms_sq = torch.zeros(batch, dtype=g.dtype, device=g.device)
    if weight is not None:
        unfolded = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=module.padding,
                            stride=module.stride)  # (B, C_in * k * k, L)
        norms_sq = norms_sq + _matrix_norms_sq(unfolded.transpose(1, 2), g.reshape(batch, channels, -1).transpose(1, 2))
    if bias is not None:
        g_sum = g.sum((2, 3))
        norms_sq = norms_sq + g_sum.square().sum(1)

    def make(c: torch.Tensor) -> Grads:
        grads: Grads = []
        if weight is not None:
            weighted = g * c[:, None, None, None]
            grads.append((weight, torch.ops.aten.convolution_backward(
                weighted, x, module.weight, None, module.stride, module.padding, module.dilation, False,
                [0, 0], module.groups, [False, True, False])[1]))
        if bias is not None:
            grads.append((bias, c @ g_sum))
        return grads

    return make, norms_sq


# ---------------------------------------------------------------------- module and loss
class BookkeepingModule(nn.Module):
    """Wraps a model so that its supported layers record (input, output) on every training forward.

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
        self._trainable = [p for p in module.parameters() if p.requires_grad]
        self._handles = [layer.register_forward_hook(self._capture) for layer in module.modules() if _trainable(layer)]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped model's output; starts a fresh record of layer calls."""
        self._records.clear()
        return self._module(*args, **kwargs)

    def _capture(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if module.training and torch.is_grad_enabled() and output.requires_grad:
            self._records.append(_Record(module, inputs[0].detach(), output))

    def _close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._records = []

    def clipped_backward(self, loss_per_sample: torch.Tensor) -> torch.Tensor:
        """One backward: set every trainable ``p.grad`` to the clipped per-sample gradient SUM.

        ``loss_per_sample`` is the (B,) vector of per-sample losses of the last forward. Returns the
        per-sample gradient norms before clipping (also kept in ``per_sample_gradient_norms``).
        """
        records = list(self._records)
        self._records.clear()
        if len({id(r.module) for r in records}) != len(records):
            raise RuntimeError("book-keeping clipping needs each layer called once per forward")
        outputs = [r.output for r in records]
        grads = torch.autograd.grad(loss_per_sample.sum(), outputs, allow_unused=True) if outputs else []
        makers: list[Maker] = []
        norms_sq: torch.Tensor | None = None
        for record, grad in zip(records, grads, strict=True):
            if grad is not None:
                make, layer_norms_sq = _layer_terms(record, grad)  # autograd.grad returns no graph
                makers.append(make)
                norms_sq = layer_norms_sq if norms_sq is None else norms_sq + layer_norms_sq
        if norms_sq is None:
            norms_sq = torch.zeros_like(loss_per_sample.detach())
        norms = norms_sq.sqrt()
        factors = (self.max_grad_norm / (norms + _EPS)).clamp(max=1.0)
        covered: set[int] = set()
        for make in makers:
            for param, grad in make(factors):
                param.grad = grad if grad.dtype == param.dtype else grad.to(param.dtype)
                covered.add(id(param))
        for param in self._trainable:
            if id(param) not in covered:  # a layer the loss did not reach this time
                param.grad = torch.zeros_like(param)
        object.__setattr__(self, "per_sample_gradient_norms", norms)  # skips nn.Module's slower __setattr__
        return norms


class BookkeepingLoss:
    """The loss ``BookkeepingCriterion`` returns: ``.item()`` is the mean loss, ``.backward()`` the clipped backward."""

    def __init__(self, module: BookkeepingModule, loss_per_sample: torch.Tensor) -> None:
        self.module = module
        self.loss_per_sample = loss_per_sample

    def detach(self) -> torch.Tensor:
        """The mean per-sample loss, detached."""
        return self.loss_per_sample.mean().detach()

    def item(self) -> float:
        """The mean per-sample loss as a float."""
        return float(self.detach().item())

    def backward(self) -> None:
        """Fill ``p.grad`` with the clipped per-sample gradient sums (see ``BookkeepingModule.clipped_backward``)."""
        self.module.clipped_backward(self.loss_per_sample)


class BookkeepingCriterion:
    """Wraps a mean-reduced criterion (e.g. ``nn.CrossEntropyLoss()``) to return a ``BookkeepingLoss``."""

    def __init__(self, module: BookkeepingModule, criterion: nn.Module) -> None:
        self.module = module
        self.criterion = criterion

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> BookkeepingLoss:
        """The per-sample losses of ``output`` against ``target``, wrapped for the clipped backward."""
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
            p.summed_grad = p.grad.detach()
        p.grad = None


def use_bookkeeping(ghost_module: nn.Module, *, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    max_grad_norm: float) -> tuple[BookkeepingModule, BookkeepingCriterion]:
    """Swap an Opacus ghost-clipping wrapper for book-keeping clipping; returns (module, criterion).

    ``ghost_module`` is the module ``PrivacyEngine.make_private(grad_sample_mode="ghost")`` returned:
    its hooks are removed (``_close``) and the model inside is wrapped by ``BookkeepingModule``. The
    optimizer (``DPOptimizerFastGradientClipping``: noise, scaling, accountant hook) and the Poisson
    data loader from the same call are kept as they are (its ``accumulate`` skips a copy, see
    ``_accumulate_by_reference``). ``criterion`` is the plain, mean-reduced loss.
    """
    optimizer.accumulate = types.MethodType(_accumulate_by_reference, optimizer)
    inner = ghost_module._module
    ghost_module._close()
    module = BookkeepingModule(inner, max_grad_norm=max_grad_norm)
    return module, BookkeepingCriterion(module, criterion)
