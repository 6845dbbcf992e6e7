from flask import Blueprint

bp = Blueprint("auth", __name__)

from . import held_views, views  # noqa: E402,F401  - register the routes on bp
