"""Password rules: long enough, no composition rules, and not one everybody guesses.

A list of breached passwords would need a download; these checks catch what attackers try
first once the length is at least 12: repeats, sequences, keyboard walks, the usual words with
digits appended, and the user's own name.
"""

from __future__ import annotations

import re

MIN_LENGTH = 12
MAX_LENGTH = 256
_COMMON_WORDS = (
    "password", "passw0rd", "letmein", "welcome", "qwerty", "azerty", "iloveyou", "admin",
    "administrator", "changeme", "secret", "monkey", "dragon", "football", "baseball",
    "sunshine", "princess", "trustno1", "abc123", "clinic", "cliniclog", "clinic_log",
    "hospital", "nurse", "doctor", "health", "summer", "winter", "autumn", "spring",
)  # fmt: skip
_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm", "1234567890", "azertyuiop", "qwertzuiop")
_SEQUENCES = (
    "abcdefghijklmnopqrstuvwxyz",
    "0123456789",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    *_KEYBOARD_ROWS,
)


def password_problem(password: str, username: str = "") -> str | None:
    """Why this password is refused, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters; a few words in a row are easy to remember."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    lowered = password.lower()
    if username and len(username) >= 3 and username.lower() in lowered:
        return "Do not use your username in your password."
    core = re.sub(r"[^a-z0-9]", "", lowered)
    if len(set(lowered)) <= 3 or _is_repeated(lowered):
        return "This password is a repeated pattern; it is among the first ones guessed."
    if any(_walks(core, sequence) for sequence in _SEQUENCES):
        return "This password is a sequence or a keyboard row; it is among the first guessed."
    stripped = re.sub(r"[0-9!@#$%^&*._\-+=?]+$", "", re.sub(r"^[0-9]+", "", lowered))
    if stripped in _COMMON_WORDS or any(stripped == w * 2 for w in _COMMON_WORDS):
        return "This is one of the most common passwords; choose something less predictable."
    return None


def _is_repeated(text: str) -> bool:
    for size in range(1, len(text) // 2 + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return True
    return False


def _walks(core: str, sequence: str) -> bool:
    """The whole password is one run along a sequence (forwards or backwards, wrapping)."""
    if len(core) < MIN_LENGTH - 2:
        return False
    doubled = sequence * 3
    return core in doubled or core[::-1] in doubled
