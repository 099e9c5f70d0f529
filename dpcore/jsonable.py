"""Plain JSON values from numbers and containers: NaN and infinities become None (JSON has neither).

>>> json_number(float("nan")) is None, json_number(2)
(True, 2.0)
>>> import numpy as np
>>> jsonable({"a": np.float32(0.5), "b": (1, float("inf")), "c": np.arange(2)})
{'a': 0.5, 'b': [1, None], 'c': [0, 1]}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def json_number(value: Any) -> float | None:
    """``value`` as a finite float, or None for None, NaN and infinities."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def jsonable(value: Any) -> Any:
    """``value`` with mappings, lists, tuples, numpy arrays and scalars turned into plain JSON values.

    Non-finite floats become None; mapping keys become strings.
    """
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy arrays and scalars
        return jsonable(value.tolist())
    if isinstance(value, float):
        return json_number(value)
    return value
