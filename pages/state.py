"""ONE way for a page to keep its widget values across pages and in the URL.

Streamlit deletes a widget's own session key when the user moves to a page that does not draw
that widget, so a page keeps its *settings* in a plain (non-widget) session dict and binds its
widgets to it. A page declares which settings go in the URL and calls :func:`sync_url` once per
run: the URL then holds exactly that page's parameters (another page's leftovers are removed, so
"Back" from the planner no longer carries its parameters onto the next page). Values read from
the URL go through :func:`url_value`, which validates them.

Usage (a page)::

    from pages import state

    SETTINGS = state.PageState(key="planner_settings", widget_prefix="planner_w_",
                               defaults=lambda: {"epochs": 10, "dataset": "synthetic"})

    settings = SETTINGS.settings()              # plain dict, created from the defaults on the first visit
    if SETTINGS.first_visit:                     # seed a new session from a shared link
        try:
            epochs = state.url_value("epochs", int, low=1, high=1000)
        except state.BadUrlValue as err:
            st.warning(f"Ignored {err}")
        else:
            if epochs is not None:
                SETTINGS.set("epochs", epochs)
    SETTINGS.bind(st.number_input, "Epochs", "epochs", min_value=1)   # widget key "planner_w_epochs"
    run_id = state.url_or_session("run", "planner_run")  # the URL wins (reload, shared link), else the session
    state.remember("run", "planner_run", new_run_id)     # the page opens another run (URL and session)
    state.sync_url({"epochs": str(settings["epochs"]), "run": run_id})  # None drops a parameter

Callbacks that change a setting (a dataset that resets its recipe) use ``SETTINGS.set(field, value)``,
which updates the plain dict and the widget together; call it before the widget is drawn. A widget the
browser already shows gets a new key then (``epochs~1``): the browser's old value, sent again when the
user's next input interrupts the run that applied the change, cannot override it (tests find widgets
by ``key.split("~")[0]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import streamlit as st

T = TypeVar("T")
GENERATION_SUFFIX = "~generation"  # plain session key (page key + suffix): each setting's widget generation


class BadUrlValue(ValueError):
    """A URL query parameter that does not parse or is out of range; ``str(err)`` is ``"name=text"``.

    ``why`` says why it was not used ("above 1000", "not one of a, b"; empty when not known).
    """

    def __init__(self, name: str, text: str, why: str = "") -> None:
        super().__init__(f"{name}={text}")
        self.name, self.text, self.why = name, text, why


@dataclass(frozen=True)
class PageState:
    """A page's settings: a plain session dict under ``key``, its widgets under ``widget_prefix + field``.

    ``defaults`` returns a fresh dict of every setting (called on the first visit of a session).
    """

    key: str
    widget_prefix: str
    defaults: Callable[[], dict[str, Any]]

    @property
    def first_visit(self) -> bool:
        """True until :meth:`settings` has created the dict in this session (seed it from the URL then)."""
        return self.key not in st.session_state

    def settings(self) -> dict[str, Any]:
        """The page's settings dict (the same object on every call; edits to it persist in the session)."""
        if self.key not in st.session_state:
            st.session_state[self.key] = self.defaults()
        return st.session_state[self.key]

    def widget_key(self, field: str) -> str:
        """The widget key bound to setting ``field``: ``widget_prefix + field``, then ``...~2``, ``...~3`` once
        :meth:`set` has replaced a drawn widget (see :meth:`set`)."""
        generation = st.session_state.get(self.key + GENERATION_SUFFIX, {}).get(field, 0)
        return self.widget_prefix + field + (f"~{generation}" if generation else "")

    def bind(self, widget: Callable[..., T], label: str, field: str, **kwargs: Any) -> T:
        """Draw ``widget(label, key=..., **kwargs)`` seeded from setting ``field``; its value is written back.

        Returns the widget's value (also stored in the settings dict).
        """
        settings = self.settings()
        key = self.widget_key(field)
        if key not in st.session_state:  # a new widget, or one Streamlit dropped on a page change
            st.session_state[key] = settings[field]
        value = widget(label, key=key, **kwargs)
        settings[field] = value
        return value

    def set(self, field: str, value: Any) -> None:
        """Change setting ``field`` and its widget (from a callback or before the widget is drawn).

        A widget already drawn gets a new key (a new widget): the browser still holds the old widget's
        value, and when the run that applies ``value`` is interrupted by the user's next input (a
        dataset picked, then ε typed at once), the next run receives that stale value. Under the old
        key it would override ``value``; under the new key it is ignored, so a recipe applies whole.
        """
        self.settings()[field] = value
        old_key = self.widget_key(field)
        if old_key in st.session_state:
            st.session_state.pop(old_key)
            generations = st.session_state.setdefault(self.key + GENERATION_SUFFIX, {})
            generations[field] = generations.get(field, 0) + 1
        st.session_state[self.widget_key(field)] = value

    def load(self, values: Mapping[str, Any]) -> None:
        """:meth:`set` every item of ``values``."""
        for field, value in values.items():
            self.set(field, value)

    def widget_value(self, field: str) -> Any:
        """The value the user just gave the widget of ``field`` (for ``on_change`` callbacks)."""
        return st.session_state[self.widget_key(field)]


def sync_url(params: Mapping[str, str | None]) -> None:
    """Make the URL's query parameters exactly ``params`` (the calling page's own), dropping ``None`` values.

    Parameters left by other pages are removed; unchanged ones are not rewritten (no needless
    browser-history entries). Call once per run, after the widgets are drawn.
    """
    wanted = {name: str(value) for name, value in params.items() if value is not None}
    for name in [name for name in st.query_params if name not in wanted]:
        del st.query_params[name]
    for name, value in wanted.items():
        if st.query_params.get(name) != value:
            st.query_params[name] = value


def url_value(name: str, parse: Callable[[str], T] = str, *, choices: Collection[Any] | None = None,
              low: float | None = None, high: float | None = None) -> T | None:
    """The URL's parameter ``name`` parsed by ``parse``; None when absent.

    Raises :class:`BadUrlValue` when it does not parse, is a non-finite number, is not one of
    ``choices`` or lies outside ``[low, high]``.
    """
    if name not in st.query_params:
        return None
    text = st.query_params[name]
    try:
        value = parse(text)
    except (TypeError, ValueError) as err:
        raise BadUrlValue(name, text, "does not parse") from err
    if isinstance(value, float) and not math.isfinite(value):
        raise BadUrlValue(name, text, "not a finite number")
    if choices is not None and value not in choices:
        raise BadUrlValue(name, text, f"not one of {', '.join(map(str, choices))}")
    if low is not None and value < low:
        raise BadUrlValue(name, text, f"below {low:g}")
    if high is not None and value > high:
        raise BadUrlValue(name, text, f"above {high:g}")
    return value


def url_or_session(name: str, session_key: str) -> str | None:
    """The URL's ``name`` if set (a reload or a shared link wins, and is remembered under the plain
    ``session_key``), else the value remembered in this session; None when neither has one."""
    from_url = st.query_params.get(name)
    if from_url:
        st.session_state[session_key] = from_url
        return from_url
    return st.session_state.get(session_key)


def remember(name: str, session_key: str, value: str | None) -> None:
    """Set URL parameter ``name`` and the plain ``session_key`` to ``value`` (None removes both).

    The counterpart of :func:`url_or_session`: call it when the page changes the value (a new run opened).
    """
    if value is None:
        st.session_state.pop(session_key, None)
        st.query_params.pop(name, None)
    else:
        st.session_state[session_key] = value
        if st.query_params.get(name) != value:
            st.query_params[name] = value
