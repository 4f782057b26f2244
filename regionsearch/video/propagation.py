"""What a propagator is: the :class:`Propagator` protocol and the :class:`Proposal` it returns.

Kept apart from :mod:`.tracks` (which builds tracks with any propagator and picks one by name) so
that an implementation such as :mod:`.memory` can import these without importing the track builder
back (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class Proposal:
    """A propagated mask: ``mask`` (H, W) bool, ``score`` the predicted IoU (0-1)."""

    mask: np.ndarray
    score: float


class Propagator(Protocol):
    """Carries objects' masks from one sampled frame to the next.

    Call order per frame: :meth:`step` with the new frame (proposals for the objects known so
    far; :meth:`begin` instead when there are none), then :meth:`add` (new or corrected masks
    *on this frame*) and :meth:`remove`.
    """

    name: str

    def step(self, image: np.ndarray) -> dict[int, Proposal]: ...

    def add(self, obj_id: int, mask: np.ndarray) -> None: ...

    def remove(self, obj_id: int) -> None: ...

    def begin(self, image: np.ndarray) -> None: ...

    def prompt(self, points: Sequence[Sequence[float]] | None, labels: Sequence[int] | None,
               box: Sequence[float] | None = None) -> Proposal: ...
