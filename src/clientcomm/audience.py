"""Deprecated alias of :mod:`clientcomm.rules.audience` (kept for one release)."""

from __future__ import annotations

import sys
import warnings

from clientcomm.rules import audience as _module

sys.modules[__name__] = _module
warnings.warn(
    "clientcomm.audience is deprecated: import from clientcomm.rules.audience",
    DeprecationWarning,
    stacklevel=2,
)
