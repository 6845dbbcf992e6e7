"""Charts of recorded symptom scores.

``series`` holds the data contract between the app and the renderer; ``render`` draws it with
matplotlib's ``Figure`` (never pyplot). Neither imports Flask or the database: ``data`` turns
database rows into series, and ``views`` serves the bytes with ETags and a small cache.
"""

from flask import Blueprint

bp = Blueprint("charts", __name__)

from . import views  # noqa: E402,F401  - registers the routes on bp
