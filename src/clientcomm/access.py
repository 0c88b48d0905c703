"""Deprecated alias of :mod:`clientcomm.rules.access` (kept for one release)."""

from __future__ import annotations

import sys
import warnings

from clientcomm.rules import access as _module

sys.modules[__name__] = _module
warnings.warn(
    "clientcomm.access is deprecated: import from clientcomm.rules.access",
    DeprecationWarning,
    stacklevel=2,
)
