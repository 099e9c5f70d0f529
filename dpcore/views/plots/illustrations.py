"""Pictures for teaching and previews: image grids (tiled, never blurred) and what clipping and noise do to
one batch of 2-D gradients (the Guide page)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from dpcore.errors import ConfigError
from dpcore.views.plots.base import (
    LIMIT_COLOR,
    RUN_PALETTE,
    TARGET_COLOR,
    TEMPLATE,
    add_note,
    base_figure,
    empty_figure,
    percent_text,
)


def _as_uint8_images(images: Any) -> np.ndarray:
    """Images as uint8 (n, H, W, 3 or 4): adds a channel axis, repeats grey to RGB, scales [0, 1] floats."""
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise ConfigError(f"images must have shape (n, H, W, C) or (n, H, W), got {array.shape}")
    if array.shape[-1] not in (1, 3, 4) and array.shape[1] in (1, 3, 4):
        array = array.transpose(0, 2, 3, 1)  # channels-first tensors
    if array.dtype != np.uint8:
        array = array.astype(float)
        if array.size and np.nanmax(array) <= 1.0:
            array = array * 255.0
        array = np.clip(np.nan_to_num(array), 0, 255).round().astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def tile_images(
    images: Any,
    *,
    columns: int = 8,
    scale: int = 1,
    gap: int = 4,
    label_height: int = 0,
) -> np.ndarray:
    """Tile images into one uint8 RGB(A) canvas, each upscaled ``scale`` x by nearest neighbour.

    Each cell is the scaled image plus ``label_height`` white rows under it, cells ``gap`` px
    apart on a white background. Returns an array (rows*cell_h, columns*cell_w, C).
    """
    array = _as_uint8_images(images)
    n, height, width, channels = array.shape
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    tile_h, tile_w = height * scale, width * scale
    cell_h, cell_w = tile_h + label_height + gap, tile_w + gap
    canvas = np.full((rows * cell_h - gap, columns * cell_w - gap, channels), 255, dtype=np.uint8)
    for index in range(n):
        row, column = divmod(index, columns)
        tile = np.repeat(np.repeat(array[index], scale, axis=0), scale, axis=1)
        top, left = row * cell_h, column * cell_w
        canvas[top:top + tile_h, left:left + tile_w] = tile
    return canvas


def _png_data_uri(canvas: np.ndarray) -> str | None:
    """``canvas`` as a PNG data URI, or None without Pillow (the pixels then go into the JSON as ``z``)."""
    try:
        from PIL import Image  # deferred: Pillow is optional (it comes with Streamlit, not with dpcore)
    except ImportError:
        return None
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_grid(
    images: Any,
    labels: Sequence[str] | None = None,
    *,
    columns: int = 8,
    tile_px: int = 56,
    title: str | None = None,
) -> go.Figure:
    """A grid preview of images (uint8 (n, H, W, C); grey, RGB, RGBA) with a caption under each.

    Small images are upscaled by nearest neighbour to about ``tile_px`` pixels (8x8 digits
    become 56x56 blocks, never blurred); the figure's size matches the pixel grid so it is
    drawn 1:1. Returns a plotly Figure with one Image trace and one annotation per label.
    """
    array = _as_uint8_images(images) if images is not None and len(images) else None
    if array is None or array.shape[0] == 0:
        return empty_figure(title, height=160)
    n, height, width, _ = array.shape
    captions = [str(label) for label in (labels or [])][:n]
    captions += [""] * (n - len(captions))
    columns = max(1, min(columns, n))
    scale = max(1, round(tile_px / max(height, width)))
    gap = 4
    label_height = 18 if any(captions) else 0
    canvas = tile_images(array, columns=columns, scale=scale, gap=gap, label_height=label_height)

    margin_top = 40 if title else 8
    fig = go.Figure()
    fig.update_layout(
        template=TEMPLATE, title=dict(text=title or ""), showlegend=False, hovermode=False,
        margin=dict(l=4, r=4, t=margin_top, b=4),
        width=canvas.shape[1] + 8, height=canvas.shape[0] + margin_top + 4,
    )
    source = _png_data_uri(canvas)
    if source is not None:
        fig.add_trace(go.Image(source=source, hoverinfo="skip"))
    else:
        fig.add_trace(go.Image(z=canvas, hoverinfo="skip"))
    fig.update_xaxes(visible=False, range=[-0.5, canvas.shape[1] - 0.5], constrain="domain", showgrid=False)
    fig.update_yaxes(visible=False, range=[canvas.shape[0] - 0.5, -0.5], scaleanchor="x", showgrid=False)
    cell_h, cell_w = height * scale + label_height + gap, width * scale + gap
    for index, caption in enumerate(captions):
        if not caption:
            continue
        row, column = divmod(index, columns)
        fig.add_annotation(
            text=caption, x=column * cell_w + width * scale / 2, y=row * cell_h + height * scale + label_height / 2,
            xref="x", yref="y", showarrow=False, font=dict(size=11, color="#444444"),
        )
    return fig


def demo_gradients(n: int = 8, *, seed: int = 2) -> np.ndarray:
    """``n`` made-up 2-D per-example gradients (array (n, 2)): roughly aligned, lengths spread around 1.3.

    Deterministic for a ``seed``; for illustrations only.
    """
    rng = np.random.default_rng(seed)
    angles = 0.7 + rng.normal(0.0, 0.55, size=n)
    norms = np.exp(rng.normal(np.log(1.3), 0.6, size=n))
    return np.column_stack([norms * np.cos(angles), norms * np.sin(angles)])


def _arrows(fig: go.Figure, vectors: np.ndarray, *, name: str, color: str, width: float, hover: Sequence[str],
            origin: tuple[float, float] = (0.0, 0.0), showlegend: bool = True) -> None:
    """One legend entry: a line from ``origin`` to each vector's tip with an arrowhead at the tip."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for vx, vy in vectors:
        xs += [origin[0], origin[0] + vx, None]
        ys += [origin[1], origin[1] + vy, None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, legendgroup=name, showlegend=showlegend,
                             line=dict(color=color, width=width), hoverinfo="skip"))
    angles = [90 - math.degrees(math.atan2(vy, vx)) for vx, vy in vectors]  # plotly: clockwise from 12 o'clock
    fig.add_trace(go.Scatter(x=origin[0] + vectors[:, 0], y=origin[1] + vectors[:, 1], mode="markers", name=name,
                             legendgroup=name, showlegend=False, text=list(hover),
                             marker=dict(symbol="arrow", size=11, angle=angles, color=color, line_width=0),
                             hovertemplate="%{text}<extra></extra>"))


def clipping_illustration(
    gradients: Any = None,
    *,
    max_grad_norm: float = 1.0,
    noise_multiplier: float = 1.0,
    seed: int = 2,
    title: str | None = "One DP-SGD step: clip each gradient, average, add noise",
) -> go.Figure:
    """Per-example gradients (2-D, array (n, 2); ``demo_gradients()`` by default) before and after clipping.

    Grey arrows are the raw gradients, blue ones the same gradients clipped to length at most
    ``max_grad_norm`` (the dashed circle), black is their average and red the average after
    Gaussian noise with standard deviation ``noise_multiplier * max_grad_norm / n`` per
    coordinate: a draw of typical length in a direction picked by ``seed``; the shaded disc
    (two standard deviations) holds 86 % of draws. Axes share one scale, in gradient units.
    Returns a plotly Figure.
    """
    grads = demo_gradients(seed=seed) if gradients is None else np.asarray(gradients, dtype=float)
    if grads.ndim != 2 or grads.shape[1] != 2 or len(grads) == 0:
        raise ConfigError(f"gradients must be an array of shape (n, 2) with n >= 1, got shape {grads.shape}")
    if not (math.isfinite(max_grad_norm) and max_grad_norm > 0):
        raise ConfigError(f"max_grad_norm must be a positive number, got {max_grad_norm!r}")
    if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
        raise ConfigError(f"noise_multiplier must be zero or a positive number, got {noise_multiplier!r}")
    n = len(grads)
    norms = np.linalg.norm(grads, axis=1)
    factors = np.minimum(1.0, max_grad_norm / np.maximum(norms, 1e-12))
    clipped = grads * factors[:, None]
    mean = clipped.mean(axis=0)
    noise_std = noise_multiplier * max_grad_norm / n
    # a noise draw of typical length (the mean length of 2-D Gaussian noise, std * sqrt(pi / 2)) in a random
    # direction: a real single draw can land anywhere, which would make the picture depend on luck
    direction = np.random.default_rng(seed + 1).uniform(0.0, 2 * math.pi)
    noisy = mean + noise_std * math.sqrt(math.pi / 2) * np.array([math.cos(direction), math.sin(direction)])
    n_clipped = int((factors < 1).sum())

    fig = base_figure(title=title, x_title="gradient, coordinate 1", y_title="gradient, coordinate 2",
                      height=440)
    add_note(fig, f"{n_clipped} of {n} gradients clipped ({percent_text(n_clipped / n)}); noise std σ·C/n = "
                  f"{noise_std:.3g}")
    circle = np.linspace(0, 2 * math.pi, 121)
    fig.add_trace(go.Scatter(x=max_grad_norm * np.cos(circle), y=max_grad_norm * np.sin(circle), mode="lines",
                             name=f"clipping bound C = {max_grad_norm:g}", hoverinfo="skip",
                             line=dict(color=TARGET_COLOR, width=1.2, dash="dash")))
    _arrows(fig, grads, name="raw per-example gradients", color="rgba(127, 127, 127, 0.55)", width=1.6,
            hover=[f"example {i + 1}: length {norm:.2f}" for i, norm in enumerate(norms)])
    _arrows(fig, clipped, name="after clipping", color=RUN_PALETTE[0], width=2.4,
            hover=[f"example {i + 1}: length {norm:.2f} → {min(norm, max_grad_norm):.2f}"
                   for i, norm in enumerate(norms)])
    if noise_std > 0:
        fig.add_trace(go.Scatter(x=mean[0] + 2 * noise_std * np.cos(circle),
                                 y=mean[1] + 2 * noise_std * np.sin(circle),
                                 mode="lines", fill="toself", fillcolor="rgba(214, 39, 40, 0.12)",
                                 line=dict(color="rgba(214, 39, 40, 0.35)", width=1), hoverinfo="skip",
                                 name="noise: most draws land here"))
    _arrows(fig, mean[None, :], name="average of clipped", color="#111111", width=3,
            hover=[f"average of the clipped gradients: length {np.linalg.norm(mean):.2f}"])
    _arrows(fig, noisy[None, :], name="after noise (what the model uses)", color=LIMIT_COLOR, width=3,
            hover=[f"noisy average: length {np.linalg.norm(noisy):.2f}"])
    # frame the circle and every tip (gradients usually share a direction, so no need to centre on 0)
    points = np.vstack([grads, noisy[None, :], [[-max_grad_norm, -max_grad_norm], [max_grad_norm, max_grad_norm]]])
    low, high = points.min(axis=0), points.max(axis=0)
    pad = 0.08 * float((high - low).max())
    fig.update_xaxes(range=[low[0] - pad, high[0] + pad], zeroline=True, zerolinecolor="#d0d0d0")
    fig.update_yaxes(range=[low[1] - pad, high[1] + pad], zeroline=True, zerolinecolor="#d0d0d0", scaleanchor="x",
                     scaleratio=1)
    # the square plot leaves room at its side: a vertical legend there instead of rows above that wrap
    fig.update_layout(showlegend=True, margin_t=66, margin_r=8,
                      legend=dict(orientation="v", x=1.02, xanchor="left", y=1.0, yanchor="top"))
    return fig
