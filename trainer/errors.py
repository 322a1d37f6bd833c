"""The trainer's own error: a reason a person can act on, written to the failure file."""

from __future__ import annotations


class TrainerInputError(Exception):
    """Bad hyperparameters, data or model input: the message is shown to the user as the failure reason."""
