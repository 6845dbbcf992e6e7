"""CSV exports: a streaming, formula-safe writer (``csvwriter``), the rules and rows
(``services``), the download routes, and ``flask export`` on the command line."""

from flask import Blueprint

bp = Blueprint("exports", __name__, url_prefix="/exports")

from . import views  # noqa: E402,F401  - registers the routes on bp
