"""Requests another site started in the user's name, told apart by the browser's own word.

The session cookie is SameSite=Lax, so a top-level GET from any site (a link, a redirect, a
form with method GET) arrives logged in. Most pages only show the user what they asked for;
a GET that starts something in their name (an export: data leaves, their export limit is
spent, the trail says they did it) must come from our own pages or from the address bar.

Browsers say where a request came from in ``Sec-Fetch-Site`` (Fetch Metadata), which pages
cannot set or remove. ``same-origin`` is one of our pages, ``none`` a typed address or a
bookmark. ``same-site`` (a sibling host under the same domain) is another origin too. A
request without the header comes from a script or from a browser too old to send it; those
pass, since the header cannot be removed from a modern browser's request.
"""

from __future__ import annotations

from functools import wraps

from flask import Response, request
from flask_login import current_user

from .. import audit
from ..database import begin_write
from ..extensions import db

OWN_OR_TYPED = frozenset({"same-origin", "none"})


def started_elsewhere() -> str | None:
    """The request's ``Sec-Fetch-Site`` when it names another origin (or a value this code
    does not know); None for our own page, a typed address, or no header."""
    value = request.headers.get("Sec-Fetch-Site")
    if value is None or value in OWN_OR_TYPED:
        return None
    return value[:40]


def own_pages_only(action: str, entity: str, message: str):
    """Refuse, with 403, ``message`` and an ``action`` audit line, a request that another
    site started (``started_elsewhere``) before the view reads or writes anything."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            fetch_site = started_elsewhere()
            if fetch_site is None:
                return view(*args, **kwargs)
            db.session.rollback()
            begin_write(db.session)
            audit.record(
                action,
                user=current_user if current_user.is_authenticated else None,
                entity=entity,
                details={
                    "path": request.path,
                    "method": request.method,
                    "sec_fetch_site": fetch_site,
                },
            )
            db.session.commit()
            return Response(message + "\n", status=403, mimetype="text/plain")

        return wrapped

    return decorator
