"""Positions in an application's event history: ``"<epoch>.<sequence>"``.

The sequence is the EVENTS stream sequence of a committed change (it grows with
every change of every application, so one application's positions have gaps:
that is fine, they only need to compare). The epoch names the incarnation of
the history (derived from the stream's creation time): when the history is
reset, old positions carry another epoch and are answered with a gap.

Clients treat positions as opaque strings (docs/delivery.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from nexxus.core.errors import InvalidArgument

__all__ = ["HistoryBounds", "Position", "epoch_of", "parse_position"]

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(value: int) -> str:
    if value <= 0:
        return "0"
    out = []
    while value:
        value, rem = divmod(value, 36)
        out.append(_DIGITS[rem])
    return "".join(reversed(out))


def epoch_of(created: datetime | None) -> str:
    """The epoch of a history created at `created` (microseconds, base 36)."""
    if created is None:
        return "0"
    return _base36(int(created.timestamp() * 1_000_000))


@dataclass(frozen=True, slots=True, order=True)
class Position:
    epoch: str
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}.{self.seq}"


def parse_position(text: str, *, field: str = "position") -> Position:
    """``"k3x9c2.1042"`` → Position; InvalidArgument (naming `field`) otherwise."""
    epoch, dot, seq = text.strip().rpartition(".")
    if not dot or not epoch or not seq.isdigit() or not all(c in _DIGITS for c in epoch):
        raise InvalidArgument(
            f"malformed position {text!r}: expected '<epoch>.<sequence>' as received on an event",
            field=field,
            reason="BAD_POSITION",
        )
    return Position(epoch, int(seq))


@dataclass(frozen=True, slots=True)
class HistoryBounds:
    """What the event history holds now: sequences `first_seq..last_seq`
    (`first_seq == last_seq + 1` when it holds nothing) of epoch `epoch`."""

    epoch: str
    first_seq: int
    last_seq: int

    @property
    def head(self) -> Position:
        """The position of the newest change (events after it are still to come)."""
        return Position(self.epoch, self.last_seq)

    def can_resume(self, position: Position) -> bool:
        """Whether every change after `position` is still retained."""
        return position.epoch == self.epoch and self.first_seq - 1 <= position.seq <= self.last_seq
