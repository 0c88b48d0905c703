"""Deprecated alias of :mod:`clientcomm.rules.readstate` (kept for one release)."""

from __future__ import annotations

import sys
import warnings

from clientcomm.rules import readstate as _module

sys.modules[__name__] = _module
warnings.warn(
    "clientcomm.readstate is deprecated: import from clientcomm.rules.readstate",
    DeprecationWarning,
    stacklevel=2,
)
