"""Published ε of real deployments and well-known research results: reference points for the ε charts and the Guide.

Plain data, each entry with its δ, its unit of privacy, its trust model and the source that states it. These
numbers are NOT comparable one to one with each other or with a run in this app (see ``CAVEATS``): a per-day
budget composes over days, a user-level ε protects more than a record-level one, local DP adds noise on each
device, and δ differs by orders of magnitude. Charts draw them as thin labelled marks (``dpcore.views.plots``).

Every value was checked on 2026-12-02 with the project's reference search before it went in; ``confirmed_by``
names what confirmed it.

>>> [d.label for d in in_range(lower=1.0, upper=5.0)]
['Apple Health (per day)', 'Apple emoji (per day)']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dpcore.errors import ConfigError

DEPLOYMENT, RESEARCH = "deployment", "research"


@dataclass(frozen=True)
class Deployment:
    """One published (ε, δ) with what it protects and where it is stated.

    ``epsilon`` and ``delta`` are the published values (δ = 0 for pure ε-DP); ``unit`` is the unit of privacy
    (what one "neighbouring dataset" differs by, and over which period); ``model`` is 'central', 'local' or
    'federated (central DP)'; ``kind`` is DEPLOYMENT or RESEARCH (a paper's benchmark, not a product).
    """

    name: str
    label: str  # short text drawn next to the mark
    year: int
    epsilon: float
    delta: float
    unit: str
    model: str
    kind: str
    protects: str
    source_title: str
    source_url: str
    confirmed_by: str

    def hover(self) -> str:
        """One line for a chart's hover: name, (ε, δ), unit and model."""
        delta = "0 (pure ε-DP)" if self.delta == 0 else f"{self.delta:g}"
        return (f"{self.name} ({self.year}, {self.kind}): ε = {self.epsilon:g}, δ = {delta}; "
                f"unit: {self.unit}; {self.model}")


#: Sorted by ε. Keep to a handful: each is a labelled line on every ε chart whose range includes it.
DEPLOYMENTS: tuple[Deployment, ...] = (
    Deployment(
        name="Google Gboard next-word models (strongest)", label="Gboard LM (best)", year=2024,
        epsilon=0.994, delta=1e-10, unit="user (all of a user's typing data used in training)",
        model="federated (central DP, DP-FTRL)", kind=DEPLOYMENT,
        protects="next-word-prediction language models trained on users' phones",
        source_title="Google Research blog: Advances in private training for production on-device language models",
        source_url="https://research.google/blog/advances-in-private-training-for-production-on-device-language-models/",
        confirmed_by="the blog text (Feb 2024): 30+ Gboard LMs with δ = 10⁻¹⁰ and ε between 0.994 and 13.69",
    ),
    Deployment(
        name="Apple Health Type Usage", label="Apple Health (per day)", year=2017,
        epsilon=2.0, delta=0.0, unit="user-day (one donation per device per day)", model="local", kind=DEPLOYMENT,
        protects="which Health data types are used (metadata, not health values)",
        source_title="Apple: Differential Privacy Overview",
        source_url="https://www.apple.com/privacy/docs/Differential_Privacy_Overview.pdf",
        confirmed_by="summaries of Apple's overview found by the search (ε = 2, one donation per day)",
    ),
    Deployment(
        name="Apple emoji suggestions", label="Apple emoji (per day)", year=2017,
        epsilon=4.0, delta=0.0, unit="user-day (one donation per device per day)", model="local", kind=DEPLOYMENT,
        protects="which emoji people type",
        source_title="Apple: Differential Privacy Overview",
        source_url="https://www.apple.com/privacy/docs/Differential_Privacy_Overview.pdf",
        confirmed_by="summaries of Apple's overview found by the search (ε = 4, one donation per day)",
    ),
    Deployment(
        name="De et al.: CIFAR-10, WRN-40 trained from scratch", label="De et al. 2022 (research)", year=2022,
        epsilon=8.0, delta=1e-5, unit="record (one training image)", model="central (DP-SGD)", kind=RESEARCH,
        protects="the training images of a benchmark (81.4 % test accuracy)",
        source_title="De, Berrada, Hayes, Smith, Balle: Unlocking High-Accuracy Differentially Private Image "
                     "Classification through Scale (arXiv 2204.13650)",
        source_url="https://arxiv.org/abs/2204.13650",
        confirmed_by="the paper's abstract: 81.4 % on CIFAR-10 under (8, 10⁻⁵)-DP",
    ),
    Deployment(
        name="Google Gboard Spanish (es-ES) next-word model, first DP launch", label="Gboard es-ES", year=2022,
        epsilon=8.9, delta=1e-10, unit="user (all of a user's typing data used in training)",
        model="federated (central DP, DP-FTRL)", kind=DEPLOYMENT,
        protects="next-word-prediction language model trained on users' phones",
        source_title="Google Research blog: Advances in private training for production on-device language models",
        source_url="https://research.google/blog/advances-in-private-training-for-production-on-device-language-models/",
        confirmed_by="the blog's figure caption: 'the first es-ES launch of ε = 8.9', all with δ = 10⁻¹⁰",
    ),
    Deployment(
        name="US Census 2020 redistricting data (P.L. 94-171), persons", label="US Census 2020", year=2021,
        epsilon=17.14, delta=1e-10, unit="person (one census record)", model="central (zCDP, ρ = 2.56)",
        kind=DEPLOYMENT,
        protects="the person tables of the redistricting release (housing units: a further ε = 2.47; total 19.61)",
        source_title="U.S. Census Bureau: Census Bureau Sets Key Parameters to Protect Privacy in 2020 Census Results",
        source_url="https://www.census.gov/newsroom/press-releases/2021/2020-census-key-parameters.html",
        confirmed_by="several secondary sources in the search agree: persons ε = 17.14, housing units 2.47, "
                     "total 19.61, δ = 10⁻¹⁰ (the Bureau's own page was not in the index)",
    ),
    Deployment(
        name="LinkedIn Audience Engagements API", label="LinkedIn (per month)", year=2020,
        epsilon=34.9, delta=7e-9, unit="member, per analyst per month", model="central", kind=DEPLOYMENT,
        protects="members' engagement with content, in marketing analytics queries",
        source_title="Rogers et al.: LinkedIn's Audience Engagements API: A Privacy Preserving Data Analytics "
                     "System at Scale (arXiv 2002.05839)",
        source_url="https://arxiv.org/abs/2002.05839",
        confirmed_by="a summary of the paper found by the search: a monthly guarantee of about (34.9, 7·10⁻⁹)",
    ),
)

#: The Guide's heading for the table (the browser test looks for it).
HEADING = "Reference points: published ε of real deployments"

#: The Guide's sentence before the table.
INTRO = ("Charts with an ε axis draw these as dotted purple lines when they fall inside the range shown (hover a "
         "label for δ and the unit of privacy). They tell you where practice has landed, not what is safe, and "
         "they do not compare one to one:")

#: Why the marks are not a league table: shown under the table in the Guide.
CAVEATS: tuple[str, ...] = (
    "**Unit of privacy.** A record-level ε (one training example) protects less than a user-level ε (everything "
    "one person contributed). Your runs here are record-level: a person with several rows gets weaker protection.",
    "**Per day or per month.** Apple's and LinkedIn's budgets renew: over a year of daily donations the worst-case "
    "ε composes to far more than the per-day number. A training run's ε is its whole lifetime.",
    "**Local vs central.** Local DP (Apple) adds noise on each device before anything is collected, so the "
    "collector never sees raw data; its ε is per report and needs far more noise for the same accuracy.",
    "**δ differs.** δ ranges from 0 (Apple) to 10⁻⁵ (De et al.); the same ε with a larger δ is a weaker promise.",
    "**Research is not deployment.** De et al. show what DP-SGD reaches on a benchmark, not a product's choice.",
)


def in_range(*, lower: float, upper: float, references: tuple[Deployment, ...] = DEPLOYMENTS) -> list[Deployment]:
    """The ``references`` whose ε lies in [``lower``, ``upper``] (ε units), sorted by ε; none when the range is
    not a finite interval (NaN, ∞ or upper < lower), so a chart of ε = ∞ draws no marks."""
    if not (math.isfinite(lower) and math.isfinite(upper)) or upper < lower:
        return []
    return sorted((d for d in references if lower <= d.epsilon <= upper), key=lambda d: d.epsilon)


def table_rows(references: tuple[Deployment, ...] = DEPLOYMENTS) -> list[dict[str, Any]]:
    """The references as rows for a table (Guide, reports): one dict per entry, columns in reading order.

    δ is text (``'1e-10'``), so a table widget never rounds it to 0.
    """
    return [{"what": d.name, "year": d.year, "ε": d.epsilon, "δ": f"{d.delta:g}", "unit of privacy": d.unit,
             "model": d.model, "kind": d.kind, "protects": d.protects, "source": d.source_url}
            for d in references]


def validate(references: tuple[Deployment, ...] = DEPLOYMENTS) -> None:
    """Raise ConfigError when an entry lacks a source URL, has ε <= 0 or δ outside [0, 1); returns None."""
    for d in references:
        if not d.source_url.startswith("https://"):
            raise ConfigError(f"reference {d.name!r} needs an https source URL, got {d.source_url!r}")
        if not (math.isfinite(d.epsilon) and d.epsilon > 0):
            raise ConfigError(f"reference {d.name!r} needs ε > 0, got {d.epsilon!r}")
        if not 0 <= d.delta < 1:
            raise ConfigError(f"reference {d.name!r} needs 0 <= δ < 1, got {d.delta!r}")
