"""What an encoder raises for an input it refuses."""

from __future__ import annotations

from dlforge.core.errors import DlforgeError


class UnreadableInput(DlforgeError):
    """An input its encoder cannot read; the message says why, the caller says which."""


class InputTooLarge(DlforgeError):
    """An input over the limit its encoder's ``size_limit`` names."""
