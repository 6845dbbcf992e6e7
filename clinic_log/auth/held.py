"""Input the session rules refused, held on the server for that user and offered back after
their next login.

A form posted after a timeout (or while a password change or enrolment is pending) is never
processed, and nothing about the patient is shown: the session rules decide before anything
else. What the user typed is kept in ``held_input`` for that user id and that form's path,
for ``CLINIC_LOG_HELD_INPUT_MINUTES`` (default 30): never the CSRF token, a password or a
code. The next login offers it back; restoring posts it to the form's own address, where the
view runs with every normal check for the new session (the user may have lost access) and,
since the restored input carries no CSRF token, saves nothing: it shows the form filled in,
to be checked and saved with an ordinary submit. Restored, discarded or expired input is
deleted; it is transient input, not a clinical record.
"""

from __future__ import annotations

import json
from datetime import timedelta

from flask import Flask, abort, current_app, g, request, session
from flask_login import current_user
from sqlalchemy import delete, select
from werkzeug.datastructures import ImmutableMultiDict

from .. import storage
from ..database import begin_write, now_utc
from ..extensions import csrf, db
from ..models import HeldInput, User
from .guards import refuse

# Session key: the offers made at this login, [[id, label, why, expires (epoch s), path], ...].
# Ids, form names and addresses only: the session cookie never carries patient data.
OFFERS = "held_offers"
# The hidden field of the "restore" button; it is posted to the form's own address.
RESTORE_FIELD = "_restore_held_input"

# Never held, whatever the form: the token, and anything that is or confirms a secret.
_NEVER_HELD_NAMES = {"csrf_token", "code", "confirm", "secret", "otp", RESTORE_FIELD}
_NEVER_HELD_WORDS = ("password", "token", "secret")

# What each form is called in the offer; the patient is never named (the cookie and the
# page before the form opens show no patient data).
FORM_NAMES = {
    "patients.new": "a new patient",
    "patients.new_episode": "a new episode",
    "patients.end_episode": "the end of an episode",
    "assessments.new": "a new entry",
    "assessments.amend": "an amendment",
    "assessments.void": "a void",
    "assessments.sign": "a sign-off",
    "charts.sign_trend": "a trend sign-off",
}
WHY = {
    "idle": "You were logged out before saving {form}",
    "absolute": "You were logged out before saving {form}",
    "password": "You had to change your password before saving {form}",
    "mfa": "You had to set up one-time codes before saving {form}",
}

RESTORED = (
    "This is what you typed before your session ended. It is NOT saved yet: check it and "
    "save it again."
)


def init_app(app: Flask) -> None:
    app.before_request(restore_held_input)
    app.context_processor(lambda: {"held_offers": offers})


def minutes() -> float:
    return float(current_app.config["HELD_INPUT_MINUTES"])


def _kept(name: str) -> bool:
    lowered = name.lower()
    return lowered not in _NEVER_HELD_NAMES and not any(w in lowered for w in _NEVER_HELD_WORDS)


def holdable() -> bool:
    """True for a POST to a form view that can show what was typed again (the views marked
    ``redisplay_on_csrf_error``); buttons and the login steps are not held."""
    if request.method != "POST" or minutes() <= 0 or len(request.path) > 500:
        return False
    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return False  # a restored form would carry no token to withhold: it would save
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, "redisplay_on_csrf_error", False))


def hold(user_id: int, why: str) -> int | None:
    """Keep this request's typed input for ``user_id``, replacing what was held for the same
    form; None when there is nothing to keep. Call inside a write; the caller commits."""
    if not holdable():
        return None
    fields = [
        [name, value] for name, values in request.form.lists() if _kept(name) for value in values
    ]
    if not any(value.strip() for _name, value in fields):
        return None
    now = now_utc()
    db.session.execute(delete(HeldInput).where(HeldInput.expires_at <= now))
    db.session.execute(
        delete(HeldInput).where(HeldInput.user_id == user_id, HeldInput.path == request.path)
    )
    held = HeldInput(
        user_id=user_id,
        endpoint=request.endpoint,
        path=request.path,
        form=json.dumps(fields),
        held_at=now,
        why=why,
        expires_at=now + timedelta(minutes=minutes()),
    )
    db.session.add(held)
    db.session.flush()
    return held.id


def offer_after_login(user: User) -> None:
    """At a new login: forget expired input, and offer this user's held input (ids and form
    names go into the new session; the input stays on the server)."""
    user_id = user.id
    now = now_utc()
    begin_write(db.session)
    db.session.execute(delete(HeldInput).where(HeldInput.expires_at <= now))
    rows = db.session.execute(
        select(
            HeldInput.id, HeldInput.endpoint, HeldInput.why, HeldInput.expires_at, HeldInput.path
        )
        .where(HeldInput.user_id == user_id)
        .order_by(HeldInput.id)
    ).all()
    db.session.commit()
    session.pop(OFFERS, None)
    if rows:
        session[OFFERS] = [
            [held_id, FORM_NAMES.get(endpoint, "a form"), why, expires.timestamp(), path]
            for held_id, endpoint, why, expires, path in rows
        ]


def offers() -> list[dict]:
    """The offers of this login still in time, for the notice on every page."""
    if not current_user.is_authenticated:
        return []
    now = now_utc().timestamp()
    return [
        {"id": held_id, "path": path, "text": WHY.get(why, WHY["idle"]).format(form=label)}
        for held_id, label, why, expires, path in session.get(OFFERS, [])
        if expires > now
    ]


def _withdraw(held_id: int) -> None:
    remaining = [offer for offer in session.get(OFFERS, []) if offer[0] != held_id]
    if remaining:
        session[OFFERS] = remaining
    else:
        session.pop(OFFERS, None)


def take(held_id: int, path: str | None = None) -> HeldInput | None:
    """Remove held input offered at this login to the current user and return it; None when
    it was not offered here, belongs to someone else, has expired or is for another form."""
    if held_id not in {offer[0] for offer in session.get(OFFERS, [])}:
        return None
    _withdraw(held_id)
    begin_write(db.session)
    held = db.session.get(HeldInput, held_id)
    found = (
        held is not None
        and held.user_id == current_user.id
        and held.expires_at > now_utc()
        and (path is None or held.path == path)
    )
    if held is not None:
        db.session.delete(held)
    db.session.commit()
    return held if found else None


def restore_held_input():
    """A "restore" button posts here with a valid token: put the held input in place of the
    request's form and let the view run. Without a token the form cannot validate, so the
    view saves nothing and shows the input again, under its normal access checks."""
    if request.method != "POST" or RESTORE_FIELD not in request.form:
        return None
    if not current_user.is_authenticated or not g.get("session_rules_passed"):
        abort(400)  # the session rules run first; this is only reached when they did not
    if not g.get("csrf_valid"):
        csrf.protect()  # raises unless the restore button's own token is good
    held_id = _id(request.form[RESTORE_FIELD])
    held = take(held_id, request.path) if held_id is not None else None
    if held is None:
        refuse(404, entity="held_input", entity_id=held_id)
    real = request._get_current_object()
    real.form = ImmutableMultiDict(held.fields())
    g.pop("csrf_valid", None)
    storage.show_instead_of_csrf_error(RESTORED)
    return None


def _id(raw: str) -> int | None:
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None


def discard(held_id: int) -> bool:
    """Forget held input offered at this login to the current user."""
    return take(held_id) is not None
