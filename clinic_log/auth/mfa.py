"""Second factor: time-based one-time codes (RFC 6238) any user can enrol in."""

from __future__ import annotations

import time

import pyotp
import pyotp.utils
import segno

ISSUER = "clinic_log"
# Accept the previous and next 30-second step too: phone clocks drift.
VALID_WINDOW = 1


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The enrolment QR code as an inline SVG document (no image files, no external service)."""
    return segno.make(uri, error="m").svg_inline(scale=4, dark="#102a43", light="#ffffff")


def accepted_step(secret: str, code: str, last_step: int | None, at: float | None = None):
    """The time step ``code`` belongs to, if valid and newer than ``last_step``; else None.

    Refusing a step that was already used stops a code seen over someone's shoulder from
    being replayed within its 30 seconds.
    """
    code = (code or "").strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6 and code.isascii()):
        return None
    totp = pyotp.TOTP(secret)
    now = time.time() if at is None else at
    current = totp.timecode(now)
    for offset in range(-VALID_WINDOW, VALID_WINDOW + 1):
        step = current + offset
        if last_step is not None and step <= last_step:
            continue
        if pyotp.utils.strings_equal(totp.generate_otp(step), code):
            return step
    return None
