"""Guide page (AppTest) and the helpers it draws from: explain topics, the band table, the clipping picture."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dpcore import ConfigError
from dpcore.privacy import deployments
from dpcore.privacy.bands import EPSILON_BANDS
from dpcore.views import plots
from dpcore.views.explain import BAND_MEANINGS, TOPICS, epsilon_band_table

PAGE = "../../pages/guide.py"


@pytest.fixture(scope="module")
def page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    return at


def test_guide_renders_every_topic_once(page):
    texts = [markdown.value for markdown in page.markdown]
    for name, text in TOPICS.items():
        assert texts.count(text) == 1, f"topic {name!r} is not on the guide exactly once"


def test_guide_shows_the_band_table_and_the_clipping_demo(page):
    assert not page.error
    table = page.dataframe[0].value
    assert list(table["reading"]) == [name for _, _, name in EPSILON_BANDS]
    assert len(page.get("plotly_chart")) == 1
    page.slider(key="guide_clip").set_value(2.5).run()
    assert not page.exception


def test_band_table_matches_the_bands():
    table = epsilon_band_table()
    assert list(table.columns) == ["ε range", "reading", "what it means"]
    assert list(table["ε range"]) == ["ε < 1", "1 ≤ ε < 5", "5 ≤ ε < 10", "ε ≥ 10"]
    assert set(BAND_MEANINGS) == {name for _, _, name in EPSILON_BANDS}


def test_clipping_illustration_clips_to_the_bound():
    grads = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, -2.0]])  # lengths 5, 0.5, 2
    fig = plots.clipping_illustration(grads, max_grad_norm=1.0, noise_multiplier=0.0)
    clipped = next(trace for trace in fig.data if trace.name == "after clipping" and trace.mode == "markers")
    tips = np.column_stack([clipped.x, clipped.y])
    np.testing.assert_allclose(np.linalg.norm(tips, axis=1), [1.0, 0.5, 1.0])
    np.testing.assert_allclose(tips[0], [0.6, 0.8])  # direction kept
    assert "2 of 3 gradients clipped (67%)" in fig.layout.title.subtitle.text
    assert not any(trace.name.startswith("noise") for trace in fig.data)  # sigma 0: no noise disc


def test_clipping_illustration_is_deterministic_and_noise_scales_with_sigma():
    def noisy_tip(sigma: float) -> np.ndarray:
        fig = plots.clipping_illustration(max_grad_norm=1.0, noise_multiplier=sigma)
        trace = next(t for t in fig.data if t.name == "after noise (what the model uses)" and t.mode == "markers")
        return np.array([trace.x[0], trace.y[0]])

    def mean_tip() -> np.ndarray:
        fig = plots.clipping_illustration(max_grad_norm=1.0, noise_multiplier=1.0)
        trace = next(t for t in fig.data if t.name == "average of clipped" and t.mode == "markers")
        return np.array([trace.x[0], trace.y[0]])

    np.testing.assert_array_equal(noisy_tip(1.0), noisy_tip(1.0))
    offset_1 = np.linalg.norm(noisy_tip(1.0) - mean_tip())
    offset_3 = np.linalg.norm(noisy_tip(3.0) - mean_tip())
    assert offset_3 == pytest.approx(3 * offset_1)  # same direction, three times the standard deviation
    assert offset_1 == pytest.approx(1.0 / 8 * np.sqrt(np.pi / 2))  # typical length of sigma * C / n noise


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(gradients=np.zeros((3, 3))), "shape"),
    (dict(max_grad_norm=0.0), "max_grad_norm"),
    (dict(noise_multiplier=-1.0), "noise_multiplier"),
])
def test_clipping_illustration_rejects_bad_input(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        plots.clipping_illustration(**kwargs)


def test_guide_shows_the_cited_table_of_deployments(page):
    """Issue 12 §5: the reference points' table, its heading and why they do not compare one to one."""
    assert deployments.HEADING in [header.value for header in page.subheader]
    table = next(frame.value for frame in page.dataframe if "unit of privacy" in frame.value.columns)
    assert list(table["what"]) == [ref.name for ref in deployments.DEPLOYMENTS]
    assert all(url.startswith("https://") for url in table["source"])
    texts = " ".join(markdown.value for markdown in page.markdown)
    assert "Unit of privacy" in texts and "Local vs central" in texts
