"""Help texts shared by the command line, the pages and the report: one sentence per setting and per summary card.

Plain data with no imports, so the command line can read ``FIELD_HELP`` without loading plotly or torch.
"""

from __future__ import annotations

#: One short, lower-case phrase per ``TrainConfig`` field (the CLI's ``--flag`` help; pages capitalise it).
FIELD_HELP: dict[str, str] = {
    "dataset": "dataset name (see `python -m dpcore datasets`)",
    "model": "model name: logreg, mlp, cnn, cnn-bn (default: the dataset's recipe)",
    "private": "train with DP-SGD (--no-private trains the non-private baseline)",
    "target_epsilon": "calibrate the noise to spend this epsilon after all epochs",
    "noise_multiplier": "fixed noise multiplier sigma (instead of --target-epsilon)",
    "target_delta": "delta of the (epsilon, delta) guarantee; keep it below 1/N",
    "max_grad_norm": "per-sample gradient clipping bound C",
    "epochs": "passes over the training set",
    "batch_size": "logical (expected) batch size",
    "physical_batch_size": "largest batch held in memory (BatchMemoryManager when smaller)",
    "lr": "learning rate",
    "optimizer": "sgd (with momentum) or adam",
    "momentum": "SGD momentum",
    "accountant": "privacy accountant: rdp, prv or gdp",
    "grad_sample_mode": "per-sample gradients: auto, bookkeeping, hooks, ghost or functorch",
    "poisson_sampling": "Poisson sampling of batches (what the accounting assumes)",
    "seed": "seed of the model initialisation (the split is fixed; reference pools have their own seed); DP noise "
            "and batch sampling use fresh OS entropy unless --reproducible",
    "reproducible": "noise and batch sampling follow --seed: reproducible, NOT private against anyone who knows "
                    "the seed",
    "validation_fraction": "share of the members held out of training as a fixed validation set, in [0, 0.5) "
                           "(sweeps default to 0.1 and choose on it, never on the non-members)",
    "device": "auto, cpu, cuda or mps",
    "nproc": "processes (one per GPU) that train this one model together with Opacus' DPDDP under torchrun; same "
             "epsilon as 1 (the global batch is accounted)",
    "epsilon_limit": "hard stop: never take a step that would spend more than this epsilon",
    "data_path": "CSV file for --dataset csv",
    "label_column": "label column of the CSV",
}

#: What each summary card of a run means (``dpcore.views.cards``): the card's tooltip, before run-specific detail.
CARD_HELP: dict[str, str] = {
    "epsilon": ("Privacy spent: the ε of the (ε, δ) guarantee this training gives, as computed by the "
                "accountant. Smaller is more private."),
    "sigma": ("Noise multiplier σ: standard deviation of the Gaussian noise added to each summed batch "
              "gradient, in units of the clipping bound C."),
    "accuracy": "Accuracy on the held-out non-members after the last epoch (the model never trained on them).",
    "mia": ("Area under the ROC curve of the loss-threshold membership attack: 0.5 means the attacker does no "
            "better than a coin flip at telling training members from held-out examples; 1.0 means perfectly."),
    "clip": ("Share of per-sample gradients longer than C (and so clipped) in the last epoch. Around "
             "50-80 % usually trains best."),
}

#: Why a run's attack card shows no AUC, by attack state (see ``dpcore.views.cards.attack_card``).
ATTACK_MESSAGES: dict[str, str] = {
    "running": "The membership attack is running…",
    "stalled": "The membership attack did not finish: the app stopped while it ran.",
    "none": "No membership attack for this run: it took no training step, or predates the attack.",
}

__all__ = ["ATTACK_MESSAGES", "CARD_HELP", "FIELD_HELP"]
