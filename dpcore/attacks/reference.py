"""Reference-model pools: the stable-logit scores of every pool example under models trained like the target.

Attacks that need reference models (LiRA, RMIA) work on a ``ReferencePool``: phi of every pool example
under every reference model, plus which examples each model trained on. ``reference_pool(train_fn, x, y)``
builds one, where ``train_fn`` is any callable that trains a model the way the target was trained
(``trainer_train_fn`` gives one for ``dpcore.engine.training.train``), so attacks run on score matrices,
not on models.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dpcore.atomic import atomic_write
from dpcore.attacks.metrics import AttackResult
from dpcore.attacks.scores import leave_one_out
from dpcore.attacks.signals import MembershipData, label_array, model_logits, stable_logit
from dpcore.engine.training import train
from dpcore.errors import ConfigError

__all__ = ["POOL_SIZES", "ModelMapper", "ReferencePool", "TrainFn", "partial_pool_path", "pool_fingerprint",
           "pool_in_masks", "reference_pool", "trainer_train_fn", "using_model_mapper"]

# Reference-pool sizes offered by the dashboard: 'thorough' is where per-example LiRA variances pay off.
POOL_SIZES: dict[str, int] = {"quick": 8, "standard": 16, "thorough": 64}

TrainFn = Callable[[torch.Tensor, torch.Tensor, int], torch.nn.Module]
#: ``mapper(score_model, indices)`` calls ``score_model(i)`` (model i's scores row) for every index and yields
#: ``(i, row)`` as each finishes, in any order: the default runs them here one by one; the Ray executor sends
#: one task per reference model (``dpcore.jobs.ray_executor``). Closing the iterator must drop unfinished ones.
ModelMapper = Callable[[Callable[[int], np.ndarray], Sequence[int]], Iterator[tuple[int, np.ndarray]]]
_MODEL_MAPPER: contextvars.ContextVar[ModelMapper | None] = contextvars.ContextVar("dpexplorer_model_mapper",
                                                                                   default=None)


@contextlib.contextmanager
def using_model_mapper(mapper: ModelMapper) -> Iterator[None]:
    """Within the block (this thread), ``reference_pool`` trains its missing models through ``mapper``."""
    token = _MODEL_MAPPER.set(mapper)
    try:
        yield
    finally:
        _MODEL_MAPPER.reset(token)


def _one_by_one(score_model: Callable[[int], np.ndarray], indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    for i in indices:
        yield i, score_model(i)


@dataclass
class ReferencePool:
    """Stable-logit scores of every pool example under every reference model.

    ``scores`` is float64 ``[M, N]``: phi (see ``stable_logit``) of example j under model i.
    ``in_masks`` is bool ``[M, N]``: whether model i trained on example j. Models come in pairs
    (2k, 2k+1) trained on complementary halves, so every example is "in" for exactly M/2 models.
    ``seeds`` are the training seeds passed to ``train_fn`` (with ``dpcore.engine.training.train`` they fix each
    model's initial weights; its noise and batches are secret unless the config is reproducible, and
    the halves each model trains on follow ``seed`` alone); ``fingerprint`` identifies the pool data
    (and the caller's ``cache_key``) so a cache built for other data is never reused.
    """

    scores: np.ndarray
    in_masks: np.ndarray
    seeds: np.ndarray
    fingerprint: str = ""
    seed: int = 0

    @property
    def n_models(self) -> int:
        """Number of reference models M."""
        return int(self.scores.shape[0])

    @property
    def n_examples(self) -> int:
        """Number of pool examples N."""
        return int(self.scores.shape[1])

    def save(self, path: str | Path) -> Path:
        """Write the pool to an ``.npz`` file; returns the path written."""
        return atomic_write(path, lambda handle: np.savez_compressed(
            handle, scores=self.scores, in_masks=self.in_masks, seeds=self.seeds,
            fingerprint=np.array(self.fingerprint), seed=np.array(self.seed)))

    @classmethod
    def load(cls, path: str | Path) -> ReferencePool:
        """Read a pool written by ``save``."""
        with np.load(Path(path), allow_pickle=False) as stored:
            return cls(scores=stored["scores"].astype(np.float64), in_masks=stored["in_masks"].astype(bool),
                       seeds=stored["seeds"], fingerprint=str(stored["fingerprint"]), seed=int(stored["seed"]))

    def leave_one_out(self, attack: str | Callable[..., np.ndarray], **kwargs: Any) -> AttackResult:
        """``leave_one_out(self.scores, self.in_masks, attack, **kwargs)``."""
        return leave_one_out(self.scores, self.in_masks, attack, **kwargs)


def pool_fingerprint(x: torch.Tensor, y: torch.Tensor, *, n_models: int, seed: int, cache_key: str) -> str:
    """32 hex digits identifying a pool's data ``(x, y)``, its ``n_models``, ``seed`` and the caller's ``cache_key``."""
    digest = hashlib.sha256()
    for tensor in (x, y):
        array = np.ascontiguousarray(tensor.detach().cpu().numpy())
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(array.tobytes())
    digest.update(json.dumps([n_models, seed, cache_key]).encode())
    return digest.hexdigest()[:32]


def pool_in_masks(n_examples: int, *, n_models: int, seed: int = 0) -> np.ndarray:
    """Bool ``[n_models, n_examples]``: pairs of complementary random halves (model 2k+1 = not model 2k)."""
    if n_models < 2 or n_models % 2:
        raise ConfigError(f"n_models must be an even number >= 2 (pairs of complementary halves), got {n_models}")
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_models, n_examples), dtype=bool)
    for pair in range(n_models // 2):
        chosen = rng.permutation(n_examples)[: n_examples // 2]
        masks[2 * pair, chosen] = True
        masks[2 * pair + 1] = ~masks[2 * pair]
    return masks


def trainer_train_fn(cfg: Any, data: MembershipData) -> TrainFn:
    """A ``train_fn`` for ``reference_pool`` that trains exactly like ``dpcore.engine.training.train(cfg)``.

    Each call trains ``cfg`` (with ``seed`` replaced: it fixes the initial weights; the noise and batches
    are fresh secret entropy unless ``cfg.reproducible``, which carries over) on the given subset as members; ``data``'s
    non-members are kept only for the trainer's test-accuracy report. Returns the trained model. Pass
    the target's resolved config (``RunResult.config``); for a ``target_epsilon`` config the noise is
    re-calibrated to the subset's size, so pass ``noise_multiplier`` instead to keep sigma identical.
    Note pool halves hold (members + non-members) / 2 examples, the target's size only for a 50/50 split.
    """
    def train_fn(x_train: torch.Tensor, y_train: torch.Tensor, seed: int) -> torch.nn.Module:
        subset = dataclasses.replace(data, x_members=x_train, y_members=y_train)
        if hasattr(subset, "raw"):
            subset.raw = None  # original CSV rows no longer line up with the subset
        info = getattr(subset, "info", None)
        if info is not None and dataclasses.is_dataclass(info) and hasattr(info, "n_members"):
            subset.info = dataclasses.replace(info, n_members=len(x_train))
        return train(dataclasses.replace(cfg, seed=int(seed)), data=subset).model

    return train_fn


def reference_pool(
    train_fn: TrainFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_models: int = 16,
    seed: int = 0,
    batch_size: int = 1024,
    cache_path: str | Path | None = None,
    cache_key: str = "",
    on_model: Callable[[int, int], None] | None = None,
) -> ReferencePool:
    """Train ``n_models`` reference models on complementary random halves of ``(x, y)`` and score them.

    ``x``/``y`` are the whole pool (for a target run: its members followed by its non-members).
    ``train_fn(x_train, y_train, seed) -> nn.Module`` must train the way the target was trained (same
    model, DP config, epochs). Each model's phi of every pool example is kept; the models are dropped.
    ``n_models`` is even: 16 by default, ``POOL_SIZES['thorough']`` = 64 for per-example variances.
    With ``cache_path`` the pool is loaded from that ``.npz`` when its fingerprint (data, n_models,
    seed, ``cache_key`` - pass e.g. a hash of the training config) matches, else trained and saved there.
    ``on_model(done, total)`` is called after each model (progress; raise inside it to cancel). With
    ``cache_path`` every model's scores are also saved to ``partial_pool_path(cache_path)`` as it is
    trained, and a later call with the same fingerprint trains only the models still missing.
    """
    if len(x) != len(y) or len(x) < 2:
        raise ConfigError(f"reference_pool needs x and y of the same length >= 2, got {len(x)} and {len(y)}")
    in_masks = pool_in_masks(len(x), n_models=n_models, seed=seed)
    fingerprint = pool_fingerprint(x, y, n_models=n_models, seed=seed, cache_key=cache_key)
    if cache_path is not None and Path(cache_path).exists():
        cached = ReferencePool.load(cache_path)
        if cached.fingerprint == fingerprint:
            return cached
    seeds = np.random.SeedSequence(seed).generate_state(n_models, dtype=np.uint32).astype(np.int64) % (2**31 - 1)
    labels = label_array(y)
    scores = np.empty((n_models, len(x)), dtype=np.float64)
    partial = None if cache_path is None else partial_pool_path(cache_path)
    start = _load_partial(partial, scores, fingerprint)
    def score_model(i: int) -> np.ndarray:
        index = torch.from_numpy(np.flatnonzero(in_masks[i]))
        model = train_fn(x[index], y[index], int(seeds[i]))
        return stable_logit(model_logits(model, x, batch_size=batch_size), labels)

    finished, saved = set(range(start)), start
    models = (_MODEL_MAPPER.get() or _one_by_one)(score_model, range(start, n_models))
    with contextlib.closing(models):  # a stop raised by on_model closes the mapper, which drops the rest
        for i, row in models:
            scores[i] = row
            finished.add(i)
            while saved in finished:
                saved += 1
            if partial is not None and saved > start:  # an interrupted pool keeps its first models trained so far
                ReferencePool(scores=scores[:saved], in_masks=in_masks[:saved], seeds=seeds[:saved],
                              fingerprint=fingerprint, seed=seed).save(partial)
            if on_model is not None:
                on_model(len(finished), n_models)
    pool = ReferencePool(scores=scores, in_masks=in_masks, seeds=seeds, fingerprint=fingerprint, seed=seed)
    if cache_path is not None:
        pool.save(cache_path)
        Path(partial).unlink(missing_ok=True)
    return pool


def partial_pool_path(cache_path: str | Path) -> Path:
    """Where ``reference_pool`` keeps the models of an unfinished pool cached at ``cache_path``:
    ``<stem>.partial.npz`` beside it."""
    path = Path(cache_path)
    return path.with_name(f"{path.stem}.partial.npz")


def _load_partial(partial: Path | None, scores: np.ndarray, fingerprint: str) -> int:
    """Copy the scores of an unfinished pool with this ``fingerprint`` into ``scores``; return how many
    models it held (0 when there is none, it is damaged or it belongs to another pool)."""
    if partial is None or not partial.exists():
        return 0
    try:
        saved = ReferencePool.load(partial)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # damaged: train again from the start
        return 0
    if saved.fingerprint != fingerprint or saved.n_models > len(scores) or saved.n_examples != scores.shape[1]:
        return 0
    scores[: saved.n_models] = saved.scores
    return saved.n_models
