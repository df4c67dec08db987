"""Domain exceptions. Handlers map them to translated replies; the CLI prints `str(exc)`.

Each exception carries the facts a message needs as attributes, never rendered text for users.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class of every expected refusal (bad input, missing record, forbidden action)."""


class InvalidAmount(DomainError):
    """An amount could not be accepted; `reason` is a stable code for the renderer."""

    def __init__(self, reason: str, text: str = "", digits: tuple[str, str] = ("", "")) -> None:
        super().__init__(f"invalid amount {text!r}: {reason}")
        # empty | format | zero | negative | precision | too_large | ambiguous
        self.reason = reason
        self.text = text
        # ambiguous: the digits before and after the one separator (`99,999` → 99, 999)
        self.digits = digits


class InvalidCardNumber(DomainError):
    def __init__(self, text: str) -> None:
        super().__init__(f"not a card number: {text!r}")
        self.text = text


class CardNotFound(DomainError):
    def __init__(self, number: str) -> None:
        super().__init__(f"card {number} is not registered")
        self.number = number


class CardBlocked(DomainError):
    def __init__(self, number: str) -> None:
        super().__init__(f"card {number} is blocked")
        self.number = number


class InventoryError(DomainError):
    """A card-inventory command was refused; nothing was written."""


class ImportFileError(DomainError):
    """The file itself cannot be imported (not a CSV, wrong header, already imported...)."""


class ImportRowsInvalid(DomainError):
    """Atomic import refused because of bad lines (already reported line by line)."""

    def __init__(self, bad_lines: int) -> None:
        super().__init__(f"{bad_lines} invalid line(s); nothing was imported")
        self.bad_lines = bad_lines
