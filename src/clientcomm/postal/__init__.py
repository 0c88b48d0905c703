"""The postal provider seam: letters to a print shop or a hybrid-mail service.

* :mod:`~clientcomm.postal.base` - the :class:`PostalProvider` Protocol and its
  values (capabilities, batch, order, per-letter status);
* :mod:`~clientcomm.postal.rules` - :func:`check_batch`, the pure batch check
  every backend applies;
* :mod:`~clientcomm.postal.memory` - :class:`MemoryPostalProvider` (records
  orders, failure injection), for tests;
* :mod:`~clientcomm.postal.filedrop` - :class:`FileDropProvider`: one print PDF
  and a JSON manifest per batch, written atomically into a folder a print shop
  watches.

Integrators add their own provider (Pingen, LetterXpress, E-POST, ...) by
passing :class:`clientcomm.testing.postal.PostalConformance`; see
``docs/letters.md``.
"""

from __future__ import annotations

from clientcomm.postal.base import (
    LetterState,
    LetterStatus,
    PostalBatch,
    PostalCapabilities,
    PostalLetter,
    PostalOrder,
    PostalProvider,
)
from clientcomm.postal.filedrop import FileDropProvider
from clientcomm.postal.memory import MemoryPostalProvider
from clientcomm.postal.rules import check_batch

__all__ = [
    "FileDropProvider",
    "LetterState",
    "LetterStatus",
    "MemoryPostalProvider",
    "PostalBatch",
    "PostalCapabilities",
    "PostalLetter",
    "PostalOrder",
    "PostalProvider",
    "check_batch",
]
