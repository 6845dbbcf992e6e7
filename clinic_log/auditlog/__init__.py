from flask import Blueprint

bp = Blueprint("auditlog", __name__, url_prefix="/audit")

from . import views  # noqa: E402,F401  - registers the routes on bp
