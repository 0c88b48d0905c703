"""``python -m clientcomm.records``: print docs/records.md (generated from the registry)."""

from __future__ import annotations

import sys

from clientcomm.records.docs import render

sys.stdout.write(render())
