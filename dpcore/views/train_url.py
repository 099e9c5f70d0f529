"""The Train page's URL: the form's settings as query parameters, and back, with every refused value named.

A link carries the TrainConfig fields that differ from the defaults (``dpcore.query``) and, for a CSV,
the *upload id* of a file this app stored (``upload=<sha256[:16]>/<name>``), never a server path: a
``data_path`` in a link is always refused, so no path from a URL reaches the CSV reader.

``read_link`` checks every value against what the form accepts (its widgets' ranges and choices). A
value it cannot use is left out, so the form keeps its default, and comes back as a :class:`Refusal`
saying what the link gave and why it was not used; the page shows them in one warning.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from dpcore.config import ACCOUNTANTS, DEVICES, GRAD_SAMPLE_MODES, OPTIMIZERS, TrainConfig
from dpcore.engine.data import DATASETS
from dpcore.engine.models import MODELS, models_for
from dpcore.errors import ConfigError, DPExplorerError
from dpcore.query import expected_text, from_query, to_query
from dpcore.views.train_form import config_from

UPLOAD_PARAM = "upload"
SHOWN_CHARS = 40  # a refused value is shown cut to this many characters

#: numeric fields -> (lowest, highest) the form's widgets accept (inclusive)
BOUNDS: dict[str, tuple[float, float]] = {
    "target_epsilon": (0.0, 1000.0), "noise_multiplier": (0.0, 1000.0), "target_delta": (0.0, 0.5),
    "max_grad_norm": (0.0, 1e6), "epochs": (1, 1000), "batch_size": (1, 1_000_000),
    "physical_batch_size": (1, 1_000_000), "lr": (0.0, 100.0), "momentum": (0.0, 0.99),
    "epsilon_limit": (0.0, 1000.0), "seed": (0, 2**32 - 1), "nproc": (1, 1024),
}
#: text fields -> the values the form offers
CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": tuple(DATASETS), "model": tuple(MODELS), "optimizer": OPTIMIZERS, "accountant": ACCOUNTANTS,
    "grad_sample_mode": GRAD_SAMPLE_MODES, "device": DEVICES,
}
NOT_IN_FORM = ("extra", "validation_fraction")  # TrainConfig fields the Train form has no widget for
MAX_LABEL_CHARS = 200
#: every parameter ``read_link`` looks at (a page seeds its form from the link when any is present)
LINK_KEYS = frozenset(TrainConfig.__dataclass_fields__) | {UPLOAD_PARAM}


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A link value not used: parameter ``name``, the ``text`` the link gave, and ``why`` (a phrase)."""

    name: str
    text: str
    why: str

    def message(self) -> str:
        """'`name=value` (why)' with the value cut to SHOWN_CHARS characters and safe inside a code span."""
        return f"`{self.name}={shown(self.text)}` ({self.why})"


def shown(text: str) -> str:
    """``text`` for a message: control characters and backticks replaced, cut to SHOWN_CHARS characters."""
    text = "".join(ch if ch.isprintable() and ch != "`" else "?" for ch in str(text))
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}… ({len(text):,} characters)"


def _last(value: Any) -> str:
    """A query value as text (a repeated key gives a list: its last item)."""
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else ""
    return str(value)


def _checked(name: str, value: Any) -> str | None:
    """Why ``value`` (parsed) cannot be the form's ``name``; None when it can."""
    if name in BOUNDS and value is not None:
        low, high = BOUNDS[name]
        if not math.isfinite(value):
            return "not a finite number"
        if value < low:
            return f"below {low:g}, the least the form accepts"
        if value > high:
            return f"above {high:g}, the most the form accepts"
    if name in CHOICES and value not in CHOICES[name]:
        return f"not one of {', '.join(CHOICES[name])}"
    if name == "label_column" and value is not None and len(value) > MAX_LABEL_CHARS:
        return f"longer than {MAX_LABEL_CHARS} characters"
    return None


def read_link(params: Mapping[str, Any], *,
              resolve_upload: Callable[[str], Any]) -> tuple[TrainConfig, list[Refusal]]:
    """The TrainConfig a link describes, and the values it gave that were not used.

    ``params`` is ``st.query_params`` or any ``{key: text}`` mapping; keys that are not form settings
    are ignored (other page parameters like ``run``). ``resolve_upload(upload_id)`` returns the stored
    file's path or raises DPExplorerError/ValueError (``dpcore.store.artifacts.upload_path``). Every
    refused value keeps the default; the config is not validated (``validate()`` may still say more).
    """
    accepted: dict[str, str] = {}
    refused: list[Refusal] = []
    for name in params:
        if name not in LINK_KEYS:
            continue
        text = _last(params[name])
        if name == "data_path":
            refused.append(Refusal(name, text, "a link cannot name a file on the server; upload the CSV on the Train "
                                               "page, whose links name the upload instead"))
        elif name in NOT_IN_FORM:
            refused.append(Refusal(name, text, "the Train form has no such setting; use the command line"))
        elif name == UPLOAD_PARAM:
            try:
                accepted["data_path"] = str(resolve_upload(text))
            except (DPExplorerError, ValueError, OSError) as err:
                refused.append(Refusal(name, text, str(err)))
        else:
            try:
                value = getattr(from_query({name: text}), name)
            except ConfigError:
                refused.append(Refusal(name, text, f"not {expected_text(name)}"))
                continue
            why = _checked(name, value)
            if why is None:
                accepted[name] = text
            else:
                refused.append(Refusal(name, text, why))
    cfg = from_query(accepted)
    if cfg.model is not None and cfg.model not in models_for(DATASETS[cfg.dataset].kind):
        refused.append(Refusal("model", cfg.model, f"does not suit the {cfg.dataset} data"))
        cfg = cfg.replace(model=None)
    if cfg.data_path is not None and cfg.dataset != "csv":
        cfg = cfg.replace(data_path=None)  # an upload only matters for the CSV dataset
    return cfg, refused


def link_params(settings: Mapping[str, Any], *, upload_of: Callable[[str], str | None]) -> dict[str, str]:
    """The form ``settings`` as URL parameters: ``to_query`` of its config, ``data_path`` swapped for its upload id.

    ``upload_of(data_path)`` gives the upload id of a stored upload, None for any other file (a CLI
    run's own path): then the link names no data file at all.
    """
    params = to_query(config_from(settings))
    data_path = params.pop("data_path", None)
    upload = upload_of(data_path) if data_path else None
    if upload:
        params[UPLOAD_PARAM] = upload
    return params


def refusal_text(refused: list[Refusal]) -> str:
    """One markdown paragraph naming every refused link value and why; the form keeps its defaults for them."""
    return ("This link has values the form cannot use, so it keeps its defaults for them: "
            + "; ".join(refusal.message() for refusal in refused) + ".")


__all__ = [
    "BOUNDS",
    "CHOICES",
    "LINK_KEYS",
    "UPLOAD_PARAM",
    "Refusal",
    "link_params",
    "read_link",
    "refusal_text",
    "shown",
]
