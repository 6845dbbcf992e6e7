from flask import Blueprint

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

from . import summary, views  # noqa: E402,F401  - register the command and routes on bp
