"""The dispatch button (seed 003, step 11 "Briefversand beauftragen"), pure.

Exactly four states, decided in this order:

1. ``FEATURE_UNAVAILABLE`` (yellow): the firm lacks the letter-dispatch feature
   (the provider's per-firm capability ``available`` is False);
2. ``CANCELLABLE`` (red): the letters are ordered and the provider still allows
   cancelling; ordered but no longer cancellable is ``NOT_POSSIBLE`` with the
   reason ``already_ordered``;
3. ``NOT_POSSIBLE`` (not clickable), with every reason: no letter qualifies
   under the filters (``no_letters``), or named documents fail named
   requirements (``letter_problems``, the problems listed);
4. ``ORDERABLE`` (green).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs

from clientcomm.letters.models import LetterProblem

__all__ = ["DispatchButton", "DispatchFacts", "DispatchReason", "DispatchState", "dispatch_state"]


class DispatchButton(enum.StrEnum):
    ORDERABLE = "orderable"  # green: order the postal dispatch
    CANCELLABLE = "cancellable"  # red: cancel the ordered dispatch
    FEATURE_UNAVAILABLE = "feature_unavailable"  # yellow: contact support
    NOT_POSSIBLE = "not_possible"  # not clickable; see reasons

    @property
    def colour(self) -> str:
        return {
            DispatchButton.ORDERABLE: "green",
            DispatchButton.CANCELLABLE: "red",
            DispatchButton.FEATURE_UNAVAILABLE: "yellow",
            DispatchButton.NOT_POSSIBLE: "grey",
        }[self]

    @property
    def clickable(self) -> bool:
        return self is not DispatchButton.NOT_POSSIBLE


class DispatchReason(enum.StrEnum):
    NO_LETTERS = "no_letters"  # the filters qualify no letter for post
    LETTER_PROBLEMS = "letter_problems"  # named documents fail named requirements
    ALREADY_ORDERED = "already_ordered"  # ordered, the provider no longer cancels


@attrs.frozen
class DispatchFacts:
    """What the button depends on."""

    feature_available: bool
    qualifying_letters: int
    problems: Sequence[LetterProblem] = ()
    ordered: bool = False
    cancellable: bool = False


@attrs.frozen
class DispatchState:
    button: DispatchButton
    reasons: tuple[DispatchReason, ...] = ()
    problems: tuple[LetterProblem, ...] = ()


def dispatch_state(facts: DispatchFacts) -> DispatchState:
    """The button for ``facts`` (see the module docs for the order)."""
    if not facts.feature_available:
        return DispatchState(DispatchButton.FEATURE_UNAVAILABLE)
    if facts.ordered:
        if facts.cancellable:
            return DispatchState(DispatchButton.CANCELLABLE)
        return DispatchState(DispatchButton.NOT_POSSIBLE, (DispatchReason.ALREADY_ORDERED,))
    reasons: list[DispatchReason] = []
    if facts.qualifying_letters <= 0:
        reasons.append(DispatchReason.NO_LETTERS)
    if facts.problems:
        reasons.append(DispatchReason.LETTER_PROBLEMS)
    if reasons:
        return DispatchState(DispatchButton.NOT_POSSIBLE, tuple(reasons), tuple(facts.problems))
    return DispatchState(DispatchButton.ORDERABLE)
