from flask import flash, redirect
from flask_login import current_user, login_required

from . import bp, held, sessions
from .guards import refuse


@bp.route("/account/held-input/<id:held_id>/discard", methods=["POST"])
@login_required
def discard_held_input(held_id: int):
    """Forget what I typed before my session ended (restoring posts to the form itself)."""
    if not held.discard(held_id):
        refuse(404, entity="held_input", entity_id=held_id)
    flash("What you had typed is discarded.", "info")
    return redirect(sessions.home_for(current_user))
