"""Book-keeping clipping: a DP-SGD step with ONE forward and ONE backward pass.

Bu et al., "Differentially private optimization on large model at small cost" (ICML 2023).
The forward keeps each supported layer's input activation ``a`` and output ``z`` (a plain ``nn.Sequential`` is
run layer by layer here, anything else through forward hooks); one backward of the per-sample losses with respect
to the outputs (the engine call behind ``torch.autograd.grad``) gives every layer's per-sample output gradient
``g`` (no weight gradient is formed, no second backward).
From (a, g) each layer gives its per-sample squared gradient norms cheaply:

- Linear with one row per sample: ``|a_i|^2 |g_i|^2`` (weight) and ``|g_i|^2`` (bias);
  with a sequence dimension the ghost-norm trick ``sum (a_i a_i^T) * (g_i g_i^T)`` or the
  per-sample gradients themselves, whichever is cheaper;
- Conv2d: the same on the unfolded input (a strided view of the padded input copied once into a reused
  buffer, several times faster than ``F.unfold`` on CPU); where the per-sample gradients are the cheaper
  norm they are kept, and the clipped sum is one (B,) x (B, n) product instead of a convolution backward;
- GroupNorm / LayerNorm affine parameters: the per-sample gradients are formed directly (GroupNorm from the
  mean and rstd its forward saved for autograd, without normalising the input a second time).

The per-sample total norms give the clip factors ``c_i = min(1, C / (|g_i| + 1e-6))`` (Opacus'
formula), and each layer's clipped SUM gradient is one weighted matrix product, e.g. ``(c * g)^T a``
for a Linear weight. That sum goes to ``p.grad``; noise, the division by the expected batch size,
the accountant and Poisson sampling are Opacus' own: the trainer builds them with
``PrivacyEngine.make_private(grad_sample_mode="ghost")`` and swaps only the gradient computation
(``use_bookkeeping``), so the noise is N(0, sigma^2 C^2) from the run's noise generator exactly as in ghost mode
(the same draws, bit for bit); a plain optimizer does Opacus' step in one tight pass (``bookkeeping_step``).

Measured with ``bench/bench_step_time.py`` on a shared 2-core CPU (see the README): the unfolding, the second
GroupNorm normalisation and the convolution weight-gradient kernel were the largest costs of the CNN step; on
the small MLP each op's fixed cost dominates, so fewer ops per step is what counts there (GroupNorm's x_hat from the
saved statistics, no sum node, no module hooks, one division for the clip factors, Opacus' optimizer bookkeeping
replaced by ``bookkeeping_step``); what remains is mostly the noise itself (one Gaussian per parameter, ~60 us).

Only models whose every trainable parameter sits directly in a supported layer are accepted
(``bookkeeping_supported``); the trainer falls back to Opacus for anything else.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dpcore.engine.bookkeeping_step import install_fast_step

try:  # what torch.autograd.grad calls after ~10 us of argument checks this path does not need (its inputs are fixed)
    from torch.autograd.graph import _engine_run_backward
except ImportError:  # another torch: the public function
    _engine_run_backward = None

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
    """One supported layer's call in the current forward: its input activation and its output.

    ``stats``: for a GroupNorm, the (mean, rstd) per (sample, group) its forward computed, when autograd kept them.
    """

    module: nn.Module
    activation: torch.Tensor
    output: torch.Tensor
    stats: tuple[torch.Tensor, torch.Tensor] | None = None


class _Workspace:
    """Scratch tensors reused from step to step for the largest temporaries of the norms (unfolded inputs).

    On CPU a fresh multi-megabyte tensor every step tends to come back from the OS as new pages, and faulting them
    in costs more than the arithmetic done on them; a buffer kept here (grown to the largest batch seen) does not.
    Its contents are only valid until the next call that takes the same key.
    """

    SMALL = 1 << 16  # elements; a smaller tensor is allocated afresh (cheaper than finding its buffer)

    def __init__(self) -> None:
        self._buffers: dict[tuple[int, str], torch.Tensor] = {}

    def take(self, key: tuple[int, str], shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialised tensor of ``shape`` with ``like``'s dtype and device, a view of the buffer for ``key``."""
        size = math.prod(shape)
        if size < self.SMALL:
            return torch.empty(shape, dtype=like.dtype, device=like.device)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < size or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = torch.empty(size, dtype=like.dtype, device=like.device)
            self._buffers[key] = buffer
        return buffer[:size].view(shape)


def _saved_group_stats(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The (mean, rstd), each (B, groups), a GroupNorm forward saved for its backward; None where it kept none.

    ``native_group_norm`` saves both for its backward (``grad_fn._saved_result1`` / ``_result2``), so reading
    them costs nothing; any other graph node (another dtype's path, a later torch) means a recomputation.
    """
    node = output.grad_fn
    if type(node).__name__ != "NativeGroupNormBackward0":
        return None
    try:
        mean, rstd = node._saved_result1.detach(), node._saved_result2.detach()
    except (AttributeError, RuntimeError):
        return None
    return (mean, rstd) if mean.dtype == output.dtype else (mean.to(output.dtype), rstd.to(output.dtype))


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
    g_sq = torch.linalg.vecdot(g, g)
    if weight is not None:
        a_sq = torch.linalg.vecdot(a, a)
        norms_sq = torch.addcmul(g_sq, g_sq, a_sq) if bias is not None else g_sq * a_sq
    else:
        norms_sq = g_sq

    def make(c: torch.Tensor) -> Grads:
        grads: Grads = []
        g_t = g.t()
        if weight is not None:
            grads.append((weight, torch.mm(g_t * c, a)))  # (c g)^T a
        if bias is not None:
            grads.append((bias, torch.mv(g_t, c)))
        return grads

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


def _affine_terms(per_sample: list[tuple[nn.Parameter, torch.Tensor]]) -> tuple[Maker, torch.Tensor]:
    """(maker of clipped sums, per-sample squared norms) from per-sample gradients, each flattened to (B, n).

    They are joined into one (B, n_total) matrix: the norms are one row-wise dot product, the clipped sums one
    (B,) x (B, n_total) product whose slices are the parameters' gradients.
    """
    flats = [flat for _, flat in per_sample]
    joined = torch.cat(flats, dim=1) if len(flats) > 1 else flats[0]
    norms_sq = torch.linalg.vecdot(joined, joined)

    def make(c: torch.Tensor) -> Grads:
        summed = torch.mv(joined.t(), c)
        grads: Grads = []
        start = 0
        for param, flat in per_sample:
            grads.append((param, summed[start:start + flat.shape[1]].view(param.shape)))
            start += flat.shape[1]
        return grads

    return make, norms_sq


def _group_norm(module: nn.GroupNorm, x: torch.Tensor, g: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None,
                workspace: _Workspace) -> tuple[Maker, torch.Tensor]:
    """GroupNorm on x (B, C, ...): per-sample affine gradients (B, C), weight ``sum_s x_hat g``, bias ``sum_s g`` over
    the spatial positions s: ``rstd * sum_s (x - mean) g`` from the forward's group statistics (``stats``, else
    recomputed) instead of a second normalisation of the whole input; without spatial positions (x is (B, C)),
    ``(x - mean) rstd g`` (three small elementwise ops; ``group_norm`` again cost about three times as much)."""
    batch, channels, groups = x.shape[0], x.shape[1], module.num_groups
    per_sample: list[tuple[nn.Parameter, torch.Tensor]] = []
    if x.dim() == 2:
        if _trainable_or_none(module.weight) is not None:
            if stats is None:
                x_hat = torch.group_norm(x, groups, None, None, module.eps)
            else:
                mean, rstd = stats
                x_hat = torch.sub(x.reshape(batch, groups, -1), mean.unsqueeze(2)).mul_(rstd.unsqueeze(2))
            per_sample.append((module.weight, x_hat.view(batch, channels).mul_(g)))
        if _trainable_or_none(module.bias) is not None:
            per_sample.append((module.bias, g))
        return _affine_terms(per_sample)
    g3 = g.reshape(batch, channels, -1)
    if _trainable_or_none(module.weight) is not None:
        if stats is None:
            stats = torch.native_group_norm(x, None, None, batch, channels, g3.shape[2], groups, module.eps)[1:]
        mean, rstd = stats
        products = torch.sub(x.reshape(batch, groups, -1), mean.unsqueeze(2),
                             out=workspace.take((id(module), "products"), (batch, groups, g3[0].numel() // groups), x))
        dots = products.view(batch, channels, -1).mul_(g3).sum(2)  # (x - mean) g per (sample, channel)
        per_sample.append((module.weight, (dots.view(batch, groups, -1) * rstd.unsqueeze(2)).view(batch, channels)))
    if _trainable_or_none(module.bias) is not None:
        per_sample.append((module.bias, g3.sum(2)))
    return _affine_terms(per_sample)


def _layer_norm(module: nn.LayerNorm, x: torch.Tensor, g: torch.Tensor) -> tuple[Maker, torch.Tensor]:
    """LayerNorm: per-sample affine gradients formed directly (they are small)."""
    batch = x.shape[0]
    normalized = F.layer_norm(x, module.normalized_shape, eps=module.eps)
    reduce_dims = tuple(range(1, x.dim() - len(module.normalized_shape)))  # leading non-batch dims
    per_sample = [(param, (grads.sum(reduce_dims) if reduce_dims else grads).reshape(batch, -1))
                  for param, grads in ((module.weight, normalized * g), (module.bias, g))
                  if _trainable_or_none(param) is not None]
    return _affine_terms(per_sample)


def _layer_terms(record: _Record, grad_output: torch.Tensor, workspace: _Workspace) -> tuple[Maker, torch.Tensor]:
    """(maker of clipped sums, per-sample squared norms) of one recorded layer call (scratch space: ``workspace``)."""
    module, a, g = record.module, record.activation, grad_output
    if isinstance(module, nn.Linear):
        if a.dim() == 2:
            return _dense_linear(module, a, g)
        rows_a, rows_g = _as_rows(a, g)
        return _linear_like(module.weight, module.bias, rows_a, rows_g)
    if isinstance(module, nn.Conv2d):
        return _conv2d(module, a, g, workspace)
    if isinstance(module, nn.GroupNorm):
        return _group_norm(module, a, g, record.stats, workspace)
    return _layer_norm(module, a, g)


def _unfold_rows(module: nn.Conv2d, x: torch.Tensor, workspace: _Workspace) -> tuple[torch.Tensor, bool]:
    """The unfolded input as rows (B, L, C_in k_h k_w), one per output position; returns (rows, channels_last).

    A strided view of the zero-padded input copied once into ``workspace`` (no ``F.unfold``, several times slower on
    CPU); the rows are valid until the next call for the same layer.
    The copy runs along whichever layout has the longer contiguous runs: (C_in, k_h, k_w, H_out, W_out), returned as
    a transposed view with columns ordered like the weight (``channels_last`` False), or a channels-last copy of
    the input viewed as (H_out, W_out, k_h, k_w, C_in), columns ordered (k_h, k_w, C_in) (``channels_last`` True).
    """
    (kh, kw), (sh, sw), (dh, dw) = module.kernel_size, module.stride, module.dilation
    ph, pw = module.padding
    batch, channels, height, width = x.shape
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    channels_last = channels * (kw if dw == 1 else 1) > (out_w if sw == 1 else 1)
    key = id(module)
    if channels_last:
        xp = workspace.take((key, "padded"), (batch, height + 2 * ph, width + 2 * pw, channels), x)
        if ph or pw:
            xp.zero_()
        xp[:, ph:ph + height, pw:pw + width].copy_(x.permute(0, 2, 3, 1))
        s0, s1, s2, s3 = xp.stride()
        view = xp.as_strided((batch, out_h, out_w, kh, kw, channels), (s0, sh * s1, sw * s2, dh * s1, dw * s2, s3))
        rows = workspace.take((key, "rows"), (batch, out_h * out_w, kh * kw * channels), x)
        rows.view(view.shape).copy_(view)
        return rows, True
    xp = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x  # (B, C_in, H_p, W_p): small where this layout is chosen
    s0, s1, s2, s3 = xp.stride()
    view = xp.as_strided((batch, channels, kh, kw, out_h, out_w), (s0, s1, dh * s2, dw * s3, sh * s2, sw * s3))
    rows = workspace.take((key, "rows"), (batch, channels * kh * kw, out_h * out_w), x)
    rows.view(view.shape).copy_(view)
    return rows.transpose(1, 2), False


def _conv2d(module: nn.Conv2d, x: torch.Tensor, g: torch.Tensor, workspace: _Workspace) -> tuple[Maker, torch.Tensor]:
    """Conv2d on input x (B, C_in, H, W) with output gradient g (B, C_out, H_out, W_out).

    Weight norms from the unfolded input rows a (B, L, K) and g as (B, C_out, L): the ghost norm <a a^T, g^T g>
    when L^2 <= K C_out, else the per-sample gradients g a (B, C_out, K), which are then kept and give the clipped
    sum as one (B,) x (B, C_out K) product. In the ghost case the clipped weight sum comes from torch's own
    convolution weight-gradient kernel applied to c * g (no per-sample gradient is formed).
    """
    weight, bias = _trainable_or_none(module.weight), _trainable_or_none(module.bias)
    batch, out_channels = g.shape[0], g.shape[1]
    g_flat = g.reshape(batch, out_channels, -1)  # (B, C_out, L)
    terms: list[torch.Tensor] = []
    per_sample: torch.Tensor | None = None
    if weight is not None:
        rows, channels_last = _unfold_rows(module, x, workspace)
        steps = rows.shape[1]
        if steps * steps <= rows.shape[2] * out_channels:  # ghost norm: <a a^T, g^T g> per sample
            terms.append(torch.linalg.vecdot(torch.bmm(rows, rows.transpose(1, 2)).view(batch, -1),
                                             torch.bmm(g_flat.transpose(1, 2), g_flat).view(batch, -1)))
        else:
            per_sample = torch.bmm(g_flat, rows).view(batch, -1)  # (B, C_out K)
            terms.append(torch.linalg.vecdot(per_sample, per_sample))
    if bias is not None:
        g_sum = g_flat.sum(2)
        terms.append(torch.linalg.vecdot(g_sum, g_sum))
    norms_sq = terms[0] if len(terms) == 1 else terms[0] + terms[1]

    def make(c: torch.Tensor) -> Grads:
        grads: Grads = []
        if weight is not None and per_sample is not None:
            summed = c @ per_sample
            if channels_last:  # columns ordered (k_h, k_w, C_in)
                kh, kw = module.kernel_size
                summed = summed.reshape(out_channels, kh, kw, -1).permute(0, 3, 1, 2)
            grads.append((weight, summed.reshape(weight.shape).contiguous()))
        elif weight is not None:
            weighted = g * c[:, None, None, None]
            grads.append((weight, torch.ops.aten.convolution_backward(
                weighted, x, module.weight, None, module.stride, module.padding, module.dilation, False,
                [0, 0], module.groups, [False, True, False])[1]))
        if bias is not None:
            grads.append((bias, c @ g_sum))
        return grads

    return make, norms_sq


# ---------------------------------------------------------------------- module and loss
def _output_grads(loss_per_sample: torch.Tensor, outputs: list[torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
    """The gradient of the summed losses with respect to each of ``outputs`` (None where the loss does not reach it),
    as ``torch.autograd.grad`` gives it; without a sum node: each per-sample loss gets an output gradient of 1."""
    ones = torch.ones_like(loss_per_sample)
    if _engine_run_backward is None:
        return torch.autograd.grad(loss_per_sample, outputs, grad_outputs=ones, allow_unused=True)
    return _engine_run_backward((loss_per_sample,), (ones,), False, False, tuple(outputs), True, accumulate_grad=False)


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
        self._bounds: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
        self._trainable = [p for p in module.parameters() if p.requires_grad]
        chain = _sequential_chain(module)
        self._chain = None if chain is None else [(layer, bool(_trainable(layer))) for layer in chain]
        self._handles = [] if chain is not None else [
            layer.register_forward_hook(self._capture) for layer in module.modules() if _trainable(layer)]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped model's output; starts a fresh record of layer calls."""
        self._records.clear()
        if self._chain is None:
            return self._module(*args, **kwargs)
        (x,) = (*args, *kwargs.values())  # nn.Sequential.forward takes exactly one input
        for layer, recorded in self._chain:
            y = layer(x)
            if recorded:
                self._capture(layer, (x,), y)
            x = y
        return x

    def _capture(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if module.training and output.requires_grad:  # False under no_grad
            stats = _saved_group_stats(output) if isinstance(module, nn.GroupNorm) else None
            self._records.append(_Record(module, inputs[0].detach(), output, stats))

    def _clip_bound(self, like: torch.Tensor) -> torch.Tensor:
        """``max_grad_norm`` as a 0-d tensor of ``like``'s dtype and device (kept: one division op instead of two)."""
        key = (like.dtype, like.device)
        bound = self._bounds.get(key)
        if bound is None:
            bound = self._bounds[key] = torch.tensor(self.max_grad_norm, dtype=like.dtype, device=like.device)
        return bound

    def _close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._chain = None
        self._records = []
        self._workspace = _Workspace()

    def clipped_backward(self, loss_per_sample: torch.Tensor) -> torch.Tensor:
        """One backward: set every trainable ``p.grad`` to the clipped per-sample gradient SUM.

        ``loss_per_sample`` is the (B,) vector of per-sample losses of the last forward. Returns the
        per-sample gradient norms before clipping (also kept in ``per_sample_gradient_norms``).
        """
        records, self._records = self._records, []
        if len({id(r.module) for r in records}) != len(records):
            raise RuntimeError("book-keeping clipping needs each layer called once per forward")
        outputs = [r.output for r in records]
        grads = _output_grads(loss_per_sample, outputs) if outputs else []
        makers: list[Maker] = []
        terms: list[torch.Tensor] = []
        with torch.no_grad():  # no graph: e.g. a convolution's weight-gradient kernel takes the (trainable) weight
            for record, grad in zip(records, grads, strict=True):
                if grad is not None:
                    make, layer_norms_sq = _layer_terms(record, grad, self._workspace)
                    makers.append(make)
                    terms.append(layer_norms_sq)
            if not terms:
                terms.append(torch.zeros_like(loss_per_sample.detach()))
            norms = (torch.stack(terms).sum(0) if len(terms) > 1 else terms[0]).sqrt()
            factors = torch.div(self._clip_bound(norms), norms + _EPS).clamp_(max=1.0)  # C / (norm + eps), <= 1
            for make in makers:
                for param, grad in make(factors):
                    param.grad = grad if grad.dtype == param.dtype else grad.to(param.dtype)
        if len(makers) != len(records):  # a layer the loss did not reach this time gets a zero gradient
            covered = {id(param) for record, grad in zip(records, grads, strict=True) if grad is not None
                       for param in _trainable(record.module)}
            for param in self._trainable:
                if id(param) not in covered:
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
        return self.loss_per_sample.detach().mean()  # detached first: no autograd node for the mean

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
        crit = self.criterion
        if type(crit) is nn.CrossEntropyLoss:  # the trainer's loss: called directly, no reduction swap
            return BookkeepingLoss(self.module, F.cross_entropy(
                output, target, weight=crit.weight, ignore_index=crit.ignore_index, reduction="none",
                label_smoothing=crit.label_smoothing))
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
                    max_grad_norm: float) -> tuple[BookkeepingModule, BookkeepingCriterion]:
    """Swap an Opacus ghost-clipping wrapper for book-keeping clipping; returns (module, criterion).

    ``ghost_module`` is the module ``PrivacyEngine.make_private(grad_sample_mode="ghost")`` returned:
    its hooks are removed (``_close``) and the model inside is wrapped by ``BookkeepingModule``. The
    optimizer (``DPOptimizerFastGradientClipping``: noise, scaling, accountant hook) and the Poisson
    data loader from the same call are kept as they are (its ``accumulate`` skips a copy, see
    ``_accumulate_by_reference``; a plain, not distributed, optimizer gets the same step in one tight pass, see
    ``bookkeeping_step.install_fast_step``). ``criterion`` is the plain, mean-reduced loss.
    """
    optimizer.accumulate = types.MethodType(_accumulate_by_reference, optimizer)
    install_fast_step(optimizer)  # subclasses (distributed) and secure mode keep Opacus' step
    inner = ghost_module._module
    ghost_module._close()
    module = BookkeepingModule(inner, max_grad_norm=max_grad_norm)
    return module, BookkeepingCriterion(module, criterion)
