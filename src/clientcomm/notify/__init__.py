"""Deprecated: the old name of :mod:`clientcomm.notifications` and :mod:`clientcomm.mail`.

``clientcomm.notify`` and its submodules (``clientcomm.notify.outbox``,
``clientcomm.notify.smtp``, ...) keep working for one release and then go away;
import from :mod:`clientcomm.notifications` (who is notified, the outbox,
templates) and :mod:`clientcomm.mail` (the transports) instead.
"""

from __future__ import annotations

import sys
import warnings

from clientcomm.mail import *  # noqa: F403
from clientcomm.mail import __all__ as _mail_all
from clientcomm.mail import addresses, memory, smtp
from clientcomm.mail import base as transport
from clientcomm.notifications import *  # noqa: F403
from clientcomm.notifications import __all__ as _notifications_all
from clientcomm.notifications import compose, inapp, links, models, outbox, rules, templates

__all__ = sorted({*_mail_all, *_notifications_all})

for _name, _module in {
    "addresses": addresses,
    "compose": compose,
    "inapp": inapp,
    "links": links,
    "memory": memory,
    "models": models,
    "outbox": outbox,
    "rules": rules,
    "smtp": smtp,
    "templates": templates,
    "transport": transport,
}.items():
    sys.modules[f"{__name__}.{_name}"] = _module

warnings.warn(
    "clientcomm.notify is deprecated: import from clientcomm.notifications and clientcomm.mail",
    DeprecationWarning,
    stacklevel=2,
)
