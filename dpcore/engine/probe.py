"""The clipping-bound probe: measure per-sample gradient norms early in training and suggest ``max_grad_norm``."""

from __future__ import annotations

import math

import numpy as np
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader

from dpcore.config import TrainConfig
from dpcore.engine.data import SplitData, load_for_config
from dpcore.engine.training import fresh_model, hooks_sample_norms, make_optimizer, resolve_device
from dpcore.errors import ConfigError


def probe_grad_norms(cfg: TrainConfig, *, steps: int = 30, data: SplitData | None = None) -> np.ndarray:
    """Per-sample gradient norms seen over ``steps`` short training steps without noise or clipping.

    The model trains as usual (same model, optimizer, batch size, seed) so the
    norms reflect the early phase of a real run. Note: the probe looks at the
    training data without privacy; a careful deployment probes on public data.
    Returns a 1-D float array, one norm per example seen.
    """
    cfg = cfg.validate()
    if data is None:
        data = load_for_config(cfg)
    cfg = cfg.validate(n=data.n_members)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model, _ = fresh_model(cfg, data)
    model.to(device)
    optimizer = make_optimizer(cfg, model)
    loader = DataLoader(data.members, batch_size=cfg.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(cfg.seed))
    engine = PrivacyEngine(accountant="rdp")
    model, optimizer, loader = engine.make_private(
        module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=0.0,
        max_grad_norm=1e9, poisson_sampling=False, grad_sample_mode="hooks")
    params = [p for p in model.parameters() if p.requires_grad]
    criterion = nn.CrossEntropyLoss()
    norms: list[np.ndarray] = []
    taken = 0
    while taken < steps:
        for xb, yb in loader:
            loss = criterion(model(xb.to(device)), yb.to(device))
            loss.backward()
            sample_norms = hooks_sample_norms(params)
            if sample_norms is not None:
                norms.append(sample_norms.detach().cpu().numpy())
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            taken += 1
            if taken >= steps:
                break
    model._close()
    return np.concatenate(norms) if norms else np.zeros(0)


def suggest_max_grad_norm(norms: np.ndarray, *, clip_fraction: float = 0.65) -> float:
    """A clipping bound that clips ``clip_fraction`` of the probed norms (the seed's advice: 50-80 %).

    Rounded to two significant figures so it reads well in a form.
    """
    if len(norms) == 0:
        raise ConfigError("no gradient norms were measured; the probe needs at least one step")
    bound = float(np.quantile(np.asarray(norms, dtype=float), 1.0 - clip_fraction))
    if bound <= 0:
        return 1e-3
    digits = 1 - math.floor(math.log10(bound))
    return float(round(bound, digits))
