"""The per-layer maths of book-keeping clipping (``dpcore.engine.bookkeeping``): from one supported layer's call in
the forward (input activation ``a``, output) and its per-sample output gradient ``g`` from the one backward, the
layer's per-sample gradient norm "pieces" and a maker of its clipped gradient sums.

- Linear with one row per sample: the pieces ``|a_i| |g_i|`` (weight) and ``|g_i|`` (bias), since the per-sample
  gradient is ``g_i a_i^T``; with a sequence dimension the ghost-norm trick ``sum (a_i a_i^T) * (g_i g_i^T)`` or the
  per-sample gradients themselves, whichever is cheaper;
- Conv2d: the same on the unfolded input (a strided view of the padded input copied once into a reused buffer,
  several times faster than ``F.unfold`` on CPU); where the per-sample gradients are the cheaper norm they are kept,
  and the clipped sum is one (B,) x (B, n) product instead of a convolution backward;
- GroupNorm / LayerNorm affine parameters: the per-sample gradients themselves (small: one entry per channel),
  GroupNorm's from the mean and rstd its forward saved for autograd, without normalising the input a second time.

All layers' pieces go into ONE (B, K) matrix whose row norms are the per-sample total norms (``_total_norms``: one
``column_stack`` and one ``vector_norm`` for the whole model); each layer's clipped SUM is then one weighted matrix
product, e.g. ``(c * g)^T a`` for a Linear weight. On the small MLP each op's fixed cost dominates the step, so the
maths here is written with as few ops as it allows (measured with ``bench/bench_step_time.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(slots=True)
class _Record:
    """One supported layer's call in the current forward: its input activation and its output.

    ``stats``: for a GroupNorm, the (mean, rstd) per (sample, group) its forward computed, when autograd kept them.
    """

    module: nn.Module
    activation: torch.Tensor
    output: torch.Tensor
    stats: tuple[torch.Tensor, torch.Tensor] | None
    weight: nn.Parameter | None  # the layer's trainable weight and bias (None where absent or frozen)
    bias: nn.Parameter | None


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
        mean, rstd = node._saved_result1, node._saved_result2  # only read under no_grad: no detach needed
    except (AttributeError, RuntimeError):
        return None
    if mean.dtype != output.dtype:
        mean, rstd = mean.detach().to(output.dtype), rstd.detach().to(output.dtype)
    return mean, rstd


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
# A layer's per-sample norm "pieces": tensors of shape (B,) or (B, k) whose squared entries, summed along each row,
# are that sample's squared gradient norm for the layer; all layers' pieces become ONE (B, K) matrix whose row norms
# are the per-sample total norms (one cat and one reduction for the whole model, see ``_total_norms``).
Terms = tuple[Maker, list[torch.Tensor]]
_vector_norm = torch.linalg.vector_norm


def _trainable_or_none(param: nn.Parameter | None) -> nn.Parameter | None:
    return param if param is not None and param.requires_grad else None


def _layer_params(module: nn.Module) -> tuple[nn.Parameter | None, nn.Parameter | None]:
    """A supported layer's (weight, bias), each None where absent or frozen (read once, when the model is wrapped)."""
    return _trainable_or_none(getattr(module, "weight", None)), _trainable_or_none(getattr(module, "bias", None))


def _root(norms_sq: torch.Tensor) -> torch.Tensor:
    """Per-sample norms from squared norms (B,) made by products of Gram matrices (rounding can dip below 0)."""
    return norms_sq.clamp_min_(0).sqrt_()


def _total_norms(pieces: list[torch.Tensor], batch: int, like: torch.Tensor) -> torch.Tensor:
    """The per-sample total gradient norms (B,) from every layer's norm pieces (zeros, ``like``'s dtype and device,
    when there are none)."""
    if not pieces:
        return torch.zeros(batch, dtype=like.dtype, device=like.device)
    return _vector_norm(torch.column_stack(pieces), dim=1)


def _dense_linear(weight: nn.Parameter | None, bias: nn.Parameter | None, a: torch.Tensor, g: torch.Tensor) -> Terms:
    """Linear on (B, d_in) rows: per-sample norms^2 |a_i|^2 |g_i|^2 + |g_i|^2 (pieces |a_i| |g_i| and |g_i|), sums
    (c g)^T a and c^T g."""
    g_norm = _vector_norm(g, dim=1)
    pieces = [g_norm * _vector_norm(a, dim=1), g_norm] if weight is not None else [g_norm]
    if bias is None:
        pieces.pop()

    def make(c: torch.Tensor) -> Grads:
        grads: Grads = []
        g_t = g.t()
        if weight is not None:
            grads.append((weight, torch.mm(g_t * c, a)))  # (c g)^T a
        if bias is not None:
            grads.append((bias, torch.mv(g_t, c)))
        return grads

    return make, pieces


def _linear_like(weight: nn.Parameter | None, bias: nn.Parameter | None, a: torch.Tensor, g: torch.Tensor) -> Terms:
    """y = a W^T + b on rows a (B, T, d_in), g (B, T, d_out): (maker of clipped sums, per-sample norm pieces)."""
    pieces: list[torch.Tensor] = []
    if weight is not None:
        pieces.append(_root(_matrix_norms_sq(a, g)))
    if bias is not None:
        g_sum = g.sum(1)
        pieces.append(g_sum)  # the per-sample bias gradients (B, d_out) themselves

    def make(c: torch.Tensor) -> Grads:
        grads: Grads = []
        if weight is not None:
            weighted = (g * c[:, None, None]).reshape(-1, g.shape[-1])
            grads.append((weight, (weighted.T @ a.reshape(-1, a.shape[-1])).reshape(weight.shape)))
        if bias is not None:
            grads.append((bias, c @ g_sum))
        return grads

    return make, pieces


def _affine_terms(per_sample: list[tuple[nn.Parameter, torch.Tensor]]) -> Terms:
    """(maker of clipped sums, norm pieces) from per-sample gradients, each (B, n): the pieces are the per-sample
    gradients themselves (small: one entry per channel), each clipped sum one (B,) x (B, n) product."""

    def make(c: torch.Tensor) -> Grads:
        grads: Grads = []
        for param, flat in per_sample:
            summed = torch.mv(flat.t(), c)
            grads.append((param, summed if param.dim() == 1 else summed.view(param.shape)))
        return grads

    return make, [flat for _, flat in per_sample]


def _group_norm(record: _Record, x: torch.Tensor, g: torch.Tensor, workspace: _Workspace) -> Terms:
    """GroupNorm on x (B, C, ...): per-sample affine gradients (B, C), weight ``sum_s x_hat g``, bias ``sum_s g`` over
    the spatial positions s: ``rstd * sum_s (x - mean) g`` from the forward's group statistics (``stats``, else
    recomputed) instead of a second normalisation of the whole input; without spatial positions (x is (B, C)),
    ``(x - mean) rstd g`` (three small elementwise ops; ``group_norm`` again cost about three times as much)."""
    module, weight, bias, stats = record.module, record.weight, record.bias, record.stats
    batch, channels, groups = x.shape[0], x.shape[1], module.num_groups
    per_sample: list[tuple[nn.Parameter, torch.Tensor]] = []
    if x.dim() == 2:
        if weight is not None:
            if stats is None:
                x_hat = torch.group_norm(x, groups, None, None, module.eps)
            else:
                mean, rstd = stats
                x_hat = torch.sub(x.reshape(batch, groups, -1), mean.unsqueeze(2)).mul_(rstd.unsqueeze(2))
            per_sample.append((weight, x_hat.view(batch, channels).mul_(g)))
        if bias is not None:
            per_sample.append((bias, g))
        return _affine_terms(per_sample)
    g3 = g.reshape(batch, channels, -1)
    if weight is not None:
        if stats is None:
            stats = torch.native_group_norm(x, None, None, batch, channels, g3.shape[2], groups, module.eps)[1:]
        mean, rstd = stats
        products = torch.sub(x.reshape(batch, groups, -1), mean.unsqueeze(2),
                             out=workspace.take((id(module), "products"), (batch, groups, g3[0].numel() // groups), x))
        dots = products.view(batch, channels, -1).mul_(g3).sum(2)  # (x - mean) g per (sample, channel)
        per_sample.append((weight, (dots.view(batch, groups, -1) * rstd.unsqueeze(2)).view(batch, channels)))
    if bias is not None:
        per_sample.append((bias, g3.sum(2)))
    return _affine_terms(per_sample)


def _layer_norm(module: nn.LayerNorm, weight: nn.Parameter | None, bias: nn.Parameter | None, x: torch.Tensor,
                g: torch.Tensor) -> Terms:
    """LayerNorm: per-sample affine gradients formed directly (they are small)."""
    batch = x.shape[0]
    grads = [(weight, F.layer_norm(x, module.normalized_shape, eps=module.eps) * g)] if weight is not None else []
    if bias is not None:
        grads.append((bias, g))
    reduce_dims = tuple(range(1, x.dim() - len(module.normalized_shape)))  # leading non-batch dims
    return _affine_terms([(param, (each.sum(reduce_dims) if reduce_dims else each).reshape(batch, -1))
                          for param, each in grads])


def _layer_terms(record: _Record, grad_output: torch.Tensor, workspace: _Workspace) -> Terms:
    """(maker of clipped sums, per-sample norm pieces) of one recorded layer call (scratch space: ``workspace``)."""
    module, a, g = record.module, record.activation, grad_output
    if isinstance(module, nn.Linear):
        if a.dim() == 2:
            return _dense_linear(record.weight, record.bias, a, g)
        rows_a, rows_g = _as_rows(a, g)
        return _linear_like(record.weight, record.bias, rows_a, rows_g)
    if isinstance(module, nn.Conv2d):
        return _conv2d(module, record.weight, record.bias, a, g, workspace)
    if isinstance(module, nn.GroupNorm):
        return _group_norm(record, a, g, workspace)
    return _layer_norm(module, record.weight, record.bias, a, g)


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


def _conv2d(module: nn.Conv2d, weight: nn.Parameter | None, bias: nn.Parameter | None, x: torch.Tensor, g: torch.Tensor,
            workspace: _Workspace) -> Terms:
    """Conv2d on input x (B, C_in, H, W) with output gradient g (B, C_out, H_out, W_out).

    Weight norms from the unfolded input rows a (B, L, K) and g as (B, C_out, L): the ghost norm <a a^T, g^T g>
    when L^2 <= K C_out, else the per-sample gradients g a (B, C_out, K), which are then kept and give the clipped
    sum as one (B,) x (B, C_out K) product. In the ghost case the clipped weight sum comes from torch's own
    convolution weight-gradient kernel applied to c * g (no per-sample gradient is formed).
    """
    batch, out_channels = g.shape[0], g.shape[1]
    g_flat = g.reshape(batch, out_channels, -1)  # (B, C_out, L)
    pieces: list[torch.Tensor] = []
    per_sample: torch.Tensor | None = None
    if weight is not None:
        rows, channels_last = _unfold_rows(module, x, workspace)
        steps = rows.shape[1]
        if steps * steps <= rows.shape[2] * out_channels:  # ghost norm: <a a^T, g^T g> per sample
            pieces.append(_root(torch.linalg.vecdot(torch.bmm(rows, rows.transpose(1, 2)).view(batch, -1),
                                                    torch.bmm(g_flat.transpose(1, 2), g_flat).view(batch, -1))))
        else:
            per_sample = torch.bmm(g_flat, rows).view(batch, -1)  # (B, C_out K)
            pieces.append(_vector_norm(per_sample, dim=1))
    if bias is not None:
        g_sum = g_flat.sum(2)
        pieces.append(g_sum)  # the per-sample bias gradients (B, C_out) themselves

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

    return make, pieces
