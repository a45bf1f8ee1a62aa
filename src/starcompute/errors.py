"""One exception hierarchy for the whole package.

::

    StarcomputeError                 base of everything starcompute raises on purpose
    ├── InputError (ValueError)      bad user input: a file, a preset name, a time, a range;
    │   │                            the message names what is wrong and what is allowed
    │   ├── UnknownPresetError       (also a KeyError) a preset name that does not exist
    │   └── ElementSetError          a malformed TLE / OMM record
    └── PropagationError             a satellite that SGP4 cannot propagate (decayed, ...)

The CLI turns an ``InputError`` into one line on stderr and exit code 2.
"""

from __future__ import annotations


class StarcomputeError(Exception):
    """Base class of every error starcompute raises on purpose."""


class InputError(StarcomputeError, ValueError):
    """Bad input from a user: the message says what is wrong and what is allowed."""


class UnknownPresetError(InputError, KeyError):
    """A preset name that does not exist; the message lists the presets that do."""

    def __init__(
        self, kind: str, name: str, available: list[str], files_allowed: bool = True
    ) -> None:
        self.kind = kind
        self.name = name
        self.available = available
        tail = " or give a file path" if files_allowed else ""
        super().__init__(f"unknown {kind} {name!r}: choose one of {', '.join(available)}{tail}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class ElementSetError(InputError):
    """A malformed orbital element set (TLE line, OMM record)."""


class PropagationError(StarcomputeError):
    """SGP4 could not propagate a satellite (see ``SGP4_ERRORS`` for the codes)."""
