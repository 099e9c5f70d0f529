"""Model registry: small networks sized for each dataset, and the Opacus compatibility fix.

``MODELS["mlp"].build(info)`` returns a fresh ``nn.Module`` for a dataset's input
shape and class count. ``make_private_compatible`` replaces layers Opacus cannot
train privately (BatchNorm mixes examples in a batch, so per-sample gradients are
undefined) and reports each replacement by module name.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from opacus.validators import ModuleValidator
from torch import nn

from dpcore.errors import ConfigError


def _flat_features(input_shape: tuple[int, ...]) -> int:
    return int(math.prod(input_shape))


def _groups(channels: int) -> int:
    """Largest of 8, 4, 2, 1 that divides ``channels`` (GroupNorm needs a divisor)."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


def build_logreg(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Multinomial logistic regression: one linear layer on the flattened input."""
    return nn.Sequential(nn.Flatten(), nn.Linear(_flat_features(input_shape), num_classes))


def build_mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int = 128) -> nn.Module:
    """The seed's MLP: Linear -> GroupNorm -> ReLU -> Linear (GroupNorm is DP-safe, unlike BatchNorm)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(_flat_features(input_shape), hidden),
        nn.GroupNorm(_groups(hidden), hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def _conv_stack(channels: int, side: int, norm: Callable[[int], nn.Module]) -> tuple[nn.Sequential, int]:
    """Two conv blocks (pooling only where the image is large enough); returns (features, flat size)."""
    layers: list[nn.Module] = []
    widths = (16, 32)
    in_ch = channels
    for width in widths:
        layers += [nn.Conv2d(in_ch, width, kernel_size=3, padding=1), norm(width), nn.ReLU()]
        if side >= 8:
            layers.append(nn.MaxPool2d(2))
            side //= 2
        in_ch = width
    return nn.Sequential(*layers), in_ch * side * side


def _build_cnn(input_shape: tuple[int, ...], num_classes: int, norm: Callable[[int], nn.Module]) -> nn.Module:
    if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
        raise ConfigError(
            f"the CNN models need square images (channels, side, side), got input shape {input_shape}; "
            "use 'mlp' or 'logreg' for tabular data"
        )
    channels, side, _ = input_shape
    features, flat = _conv_stack(channels, side, norm)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat, 64), nn.ReLU(), nn.Linear(64, num_classes))
    # Named children so reports read 'features.1: BatchNorm2d -> GroupNorm'.
    return nn.Sequential(OrderedDict(features=features, classifier=classifier))


def build_cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """MNIST-style CNN (conv-GroupNorm-ReLU-pool x2, two linear layers) for 1x8x8, 1x28x28 or 3x32x32."""
    return _build_cnn(input_shape, num_classes, lambda width: nn.GroupNorm(_groups(width), width))


def build_cnn_bn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The same CNN with BatchNorm: Opacus rejects it, so the trainer swaps BatchNorm for GroupNorm."""
    return _build_cnn(input_shape, num_classes, nn.BatchNorm2d)


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: how to build the model and which data it suits."""

    name: str
    title: str
    description: str
    kinds: tuple[str, ...]
    builder: Callable[[tuple[int, ...], int], nn.Module]

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """A freshly initialised model (seed torch first for reproducible weights)."""
        return self.builder(tuple(input_shape), num_classes)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("logreg", "Logistic regression", "One linear layer: the simplest convex baseline.",
                  ("tabular", "image"), build_logreg),
        ModelSpec("mlp", "MLP (GroupNorm)", "Linear-GroupNorm-ReLU-Linear, 128 hidden units.",
                  ("tabular", "image"), build_mlp),
        ModelSpec("cnn", "CNN (GroupNorm)", "Two conv blocks with GroupNorm, then two linear layers.",
                  ("image",), build_cnn),
        ModelSpec("cnn-bn", "CNN with BatchNorm", "The CNN with BatchNorm, which DP-SGD cannot use as is: "
                  "the trainer replaces it with GroupNorm and says so.", ("image",), build_cnn_bn),
    )
}


def build_model(name: str, *, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build registry model ``name`` for the given input shape and class count."""
    if name not in MODELS:
        raise ConfigError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    return MODELS[name].build(input_shape, num_classes)


def models_for(kind: str) -> list[str]:
    """Registry names of the models that suit a dataset kind ('image' or 'tabular')."""
    return [name for name, spec in MODELS.items() if kind in spec.kinds]


def make_private_compatible(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """Return (model Opacus accepts, list of replacements like 'features.1: BatchNorm2d -> GroupNorm').

    ``ModuleValidator.fix`` does not name what it replaced, so the module types are
    diffed by name before and after. Also turns in-place activations off: an
    in-place ReLU right after a hooked layer breaks the backward hooks.
    """
    for module in model.modules():
        if isinstance(module, (nn.ReLU, nn.LeakyReLU, nn.ELU)) and getattr(module, "inplace", False):
            module.inplace = False
    if not ModuleValidator.validate(model, strict=False):
        return model, []
    before = {name: type(module).__name__ for name, module in model.named_modules()}
    fixed = ModuleValidator.fix(model)
    after = {name: type(module).__name__ for name, module in fixed.named_modules()}
    fixes = [f"{name}: {before[name]} -> {after[name]}"
             for name in after if name in before and before[name] != after[name]]
    remaining = ModuleValidator.validate(fixed, strict=False)
    if remaining:
        raise ConfigError("model has layers Opacus cannot train privately even after fixing: "
                          + "; ".join(str(err) for err in remaining))
    return fixed, fixes
