from flask import render_template
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..auth.guards import admin_required
from ..extensions import db
from ..models import Site, User
from . import bp


@bp.route("/")
@admin_required
def index():
    """Sites and accounts at a glance; admins see no clinical data."""
    sites = db.session.scalars(select(Site).order_by(Site.code)).all()
    users = db.session.scalars(
        select(User).options(selectinload(User.sites)).order_by(User.username)
    ).all()
    return render_template("admin/index.html", sites=sites, users=users)
