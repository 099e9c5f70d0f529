"""TrainConfig <-> URL query parameters: a config that fits in a copied link, and back.

Pages keep the training form in the URL with these two functions; every field is written as
short text (``'1e-05'``, ``'true'``, ``'none'``, JSON for ``extra``) and parsed back to the
field's type, so ``from_query(to_query(cfg)) == cfg``.

>>> to_query(TrainConfig(dataset="digits", target_epsilon=3.0, epochs=20))
{'dataset': 'digits', 'target_epsilon': '3.0', 'epochs': '20'}
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Mapping
from typing import Any

from dpcore.config import TrainConfig
from dpcore.errors import ConfigError

_QUERY_NONE = "none"
_QUERY_TRUE = ("true", "1", "yes", "on")
_QUERY_FALSE = ("false", "0", "no", "off")
_EXPECTED = {bool: "true or false", int: "a whole number", float: "a number", dict: "a JSON object",
             list: "a JSON list of names"}


@functools.cache
def _field_kinds() -> dict[str, tuple[type, bool]]:
    """For every TrainConfig field: (value type, whether None is allowed)."""
    kinds = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        optional = False
        if typing.get_origin(hint) in (typing.Union, types.UnionType):  # 'float | None'
            args = typing.get_args(hint)
            optional = type(None) in args
            hint = next(arg for arg in args if arg is not type(None))
        kinds[name] = (typing.get_origin(hint) or hint, optional)
    return kinds


def _query_value(value: Any) -> str:
    if value is None:
        return _QUERY_NONE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # shortest exact form: '1e-05', '0.1', '3.0'
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _parse(kind: type, text: str) -> Any:
    """``text`` as a value of ``kind``; ValueError when it does not parse."""
    if kind is bool:
        lowered = text.lower()
        if lowered not in _QUERY_TRUE + _QUERY_FALSE:
            raise ValueError(text)
        return lowered in _QUERY_TRUE
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    if kind is dict:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(text)
        return value
    if kind is list:
        value = json.loads(text)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(text)
        return value
    return text


def to_query(cfg: TrainConfig) -> dict[str, str]:
    """``cfg`` as URL query parameters: ``{field: text}`` for the fields that differ from ``TrainConfig()``.

    Short enough for a copied URL; ``from_query`` turns it back into an equal config.

    >>> from_query(to_query(TrainConfig(dataset="digits", target_epsilon=3.0))) == TrainConfig(
    ...     dataset="digits", target_epsilon=3.0)
    True
    """
    defaults = TrainConfig()
    return {f.name: _query_value(getattr(cfg, f.name)) for f in dataclasses.fields(TrainConfig)
            if getattr(cfg, f.name) != getattr(defaults, f.name)}


def from_query(params: Mapping[str, Any], *, base: TrainConfig | None = None) -> TrainConfig:
    """The TrainConfig in URL query parameters (``st.query_params`` or any ``{key: text}`` mapping).

    Fields not in ``params`` keep their value in ``base`` (default ``TrainConfig()``); keys
    that are not TrainConfig fields are ignored, so a page can keep its own keys in the same
    URL. A key given several times (a list) uses its last value. A value that does not parse
    raises ConfigError naming the field; ranges are checked later by ``validate()``.
    """
    kinds = _field_kinds()
    changes: dict[str, Any] = {}
    for key in params:
        if key not in kinds:
            continue
        raw = params[key]
        if isinstance(raw, (list, tuple)):
            if not raw:
                continue
            raw = raw[-1]
        text = str(raw).strip()
        kind, optional = kinds[key]
        if optional and text.lower() in (_QUERY_NONE, ""):
            changes[key] = None
            continue
        try:
            changes[key] = _parse(kind, text)
        except ValueError as err:  # json.JSONDecodeError is a ValueError too
            raise ConfigError(f"query parameter {key}={text!r} is not {_EXPECTED.get(kind, 'text')}; "
                              "fix or remove it from the URL") from err
    return dataclasses.replace(base or TrainConfig(), **changes)


def expected_text(field: str) -> str:
    """What a URL value of TrainConfig ``field`` must look like ('a whole number', 'true or false', ...)."""
    return _EXPECTED.get(_field_kinds()[field][0], "text")


__all__ = ["expected_text", "from_query", "to_query"]
