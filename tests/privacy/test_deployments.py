"""Reference points of real deployments (issue 12 §5): the cited table is complete and in_range selects by ε."""

from __future__ import annotations

import dataclasses
import math

import pytest

from dpcore import ConfigError
from dpcore.privacy import deployments
from dpcore.privacy.deployments import DEPLOYMENTS, RESEARCH, in_range, table_rows, validate


def test_every_entry_is_cited_and_well_formed():
    assert 5 <= len(DEPLOYMENTS) <= 8
    validate()  # raises on a missing source, ε <= 0 or δ outside [0, 1)
    for ref in DEPLOYMENTS:
        assert ref.source_url.startswith("https://") and ref.source_title and ref.confirmed_by
        assert math.isfinite(ref.epsilon) and ref.epsilon > 0 and 0 <= ref.delta < 1
        assert ref.unit and ref.model and ref.protects and 2000 <= ref.year <= 2030
        assert ref.label in ref.hover() or ref.name in ref.hover()
    assert len({ref.label for ref in DEPLOYMENTS}) == len(DEPLOYMENTS)  # labels tell the marks apart
    assert [ref.epsilon for ref in DEPLOYMENTS] == sorted(ref.epsilon for ref in DEPLOYMENTS)


def test_research_is_labelled_as_research_and_per_period_budgets_say_so():
    research = [ref for ref in DEPLOYMENTS if ref.kind == RESEARCH]
    assert research and all("research" in ref.label for ref in research)
    for ref in DEPLOYMENTS:
        if "day" in ref.unit or "month" in ref.unit:
            assert "per day" in ref.label or "per month" in ref.label, ref.label


@pytest.mark.parametrize("field, value", [("source_url", ""), ("epsilon", 0.0), ("epsilon", math.inf),
                                          ("delta", 1.0), ("delta", -1e-9)])
def test_validate_refuses_a_bad_entry(field, value):
    bad = dataclasses.replace(DEPLOYMENTS[0], **{field: value})
    with pytest.raises(ConfigError, match=DEPLOYMENTS[0].name.split()[0]):
        validate((bad,))


def test_in_range_is_inclusive_sorted_and_empty_for_non_finite_ranges():
    assert [ref.epsilon for ref in in_range(lower=2.0, upper=8.0)] == [2.0, 4.0, 8.0]
    assert in_range(lower=0.0, upper=0.5) == []
    for lower, upper in [(0.0, math.inf), (math.nan, 3.0), (5.0, 1.0), (-math.inf, math.inf)]:
        assert in_range(lower=lower, upper=upper) == []


def test_table_rows_keep_small_deltas_readable():
    rows = table_rows()
    assert len(rows) == len(DEPLOYMENTS) and all(row["source"].startswith("https://") for row in rows)
    census = next(row for row in rows if "Census" in row["what"])
    assert census["ε"] == 17.14 and census["δ"] == "1e-10"
    assert deployments.HEADING and len(deployments.CAVEATS) >= 4
