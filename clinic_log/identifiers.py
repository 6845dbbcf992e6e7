"""How patient identifiers compare: the same identifier, and one that only looks the same.

Pure (no Flask), so the model, the services and the migrations' backfill share one rule.
The look-alike rule is Unicode's (TR39 confusable skeletons), with the data ICU ships, rather
than tables of our own: PyICU's SpoofChecker implements the skeleton exactly as specified.
"""

from __future__ import annotations

import unicodedata
from functools import cache

import icu


def identifier_key(value: str) -> str:
    """The form identifiers are compared in: NFKC, then case-folded ('n-001' is 'N-001')."""
    return unicodedata.normalize("NFKC", value).strip().casefold()


def identifier_skeleton(value: str) -> str:
    """What an identifier looks like: its TR39 confusable skeleton, without combining marks and
    without case. 'N-001', 'Ν-001' (Greek Nu), 'n-ОО1' (Cyrillic O), 'N‐001' (a hyphen) and
    'N-0̣01' (a dot below) all have the same one.

    Marks are removed because TR39 keeps them and a small accent is easy to miss on a ward;
    case, because identifiers are compared without it. The skeleton is taken again after
    case-folding, so that a letter whose lower case looks like something else still meets.
    """
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", value).strip())
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Mn", "Me"))
    checker = _spoof_checker()
    return checker.getSkeleton(0, checker.getSkeleton(0, text).casefold())


# Characters that show nothing (or nothing but blank space) and so make one text look like
# another: Unicode's default-ignorable code points (zero-width and text-direction characters,
# Hangul fillers, variation selectors, ...) and the blank Braille pattern, which is a visible
# character to Unicode but an empty cell on screen.
_INVISIBLE = icu.UnicodeSet(r"[[:Default_Ignorable_Code_Point:]\u2800]")
_INVISIBLE.freeze()  # read-only from here on, so threads may share it


def invisible_characters(text: str) -> list[str]:
    """The characters of ``text`` that show nothing on screen."""
    return [ch for ch in text if _INVISIBLE.contains(ch)]


@cache
def _spoof_checker() -> icu.SpoofChecker:
    return icu.SpoofChecker()
