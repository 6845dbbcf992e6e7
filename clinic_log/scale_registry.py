"""The instruments this installation offers, loaded and validated once at start-up."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, current_app

from .config import ConfigError
from .scales import Scale, ScaleDefinitionError, Severity, load_scales

_EXTENSION_KEY = "clinic_log.scales"


def init_scales(app: Flask) -> None:
    """Load the built-in scale files plus any in CLINIC_LOG_SCALES_DIR.

    A broken file raises ScaleDefinitionError naming the file and field, so the app never
    starts with an instrument it cannot score correctly.
    """
    extra = [Path(app.config["SCALES_DIR"])] if app.config.get("SCALES_DIR") else []
    try:
        app.extensions[_EXTENSION_KEY] = load_scales(*extra)
    except ScaleDefinitionError as exc:
        raise ConfigError(f"Bad scale definition: {exc}") from exc


def scales() -> dict[str, Scale]:
    return current_app.extensions[_EXTENSION_KEY]


def get_scale(key: str) -> Scale | None:
    return scales().get(key)


def entry_severity(entry) -> Severity | None:
    """How an entry's total reads wherever a band appears (``Scale.severity``): its band, the
    floor an incomplete total has reached, or "Incomplete". ``entry`` is any row with
    ``scale_key``, ``total``, ``complete`` and ``not_assessed_count``; None for a scale this
    installation no longer has."""
    scale = get_scale(entry.scale_key)
    if scale is None:
        return None
    return scale.severity(entry.total, entry.complete, entry.not_assessed_count)
