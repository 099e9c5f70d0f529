"""The Train form's "processes / GPUs" choice: one training across several GPUs (Opacus DPDDP under torchrun).

Not a page. Drawn only when more than one CUDA GPU is visible; otherwise the setting is kept at 1 (a link made
on a GPU machine then trains in one process here, with the same ε). The choices and the help text are in
``dpcore.views.train_form``; the job runs the torchrun command from its worker (``dpcore.jobs.distributed``).
"""

from __future__ import annotations

from typing import Any

import streamlit as st
import torch

from dpcore.views import train_form as tf
from pages.state import PageState


def visible_gpus() -> int:
    """CUDA GPUs this server's workers can use (0 without CUDA); not cached, it is cheap."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def nproc_select(form: PageState, settings: dict[str, Any]) -> None:
    """The "Processes / GPUs" selectbox bound to setting ``nproc``, or nothing (and ``nproc`` 1) with < 2 GPUs."""
    options = tf.nproc_options(visible_gpus())
    if not options or settings["device"] not in ("auto", "cuda"):
        if settings.get("nproc", 1) != 1:
            form.set("nproc", 1)
        return
    if settings.get("nproc", 1) not in options:
        form.set("nproc", options[-1])
    form.bind(st.selectbox, "Processes / GPUs", "nproc", options=options, disabled=settings["mode"] == "baseline",
              format_func=lambda n: "1 (one process)" if n == 1 else f"{n} GPUs (DPDDP)", help=tf.HELP["nproc"])
