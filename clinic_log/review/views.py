from flask import render_template, request
from flask_login import current_user
from sqlalchemy import select

from ..auth.guards import role_required
from ..extensions import db
from ..models import Assessment, AssessmentStatus, Patient, Role
from ..scale_registry import scales
from . import bp, services
from .forms import SignForm


@bp.route("/")
@role_required(Role.SUPERVISOR)
def index():
    """Unreviewed entries at my sites, oldest first, filterable by patient and scale."""
    patient_id = request.args.get("patient", type=int)
    scale_key = request.args.get("scale") or None
    if scale_key not in scales():
        scale_key = None
    entries = services.queue(current_user, patient_id, scale_key)
    total = services.queue_size(current_user, patient_id, scale_key)
    patients = db.session.execute(
        select(Patient.id, Patient.identifier)
        .join(Assessment, Assessment.patient_id == Patient.id)
        .where(
            Patient.site_id.in_(current_user.site_ids),
            Assessment.status == AssessmentStatus.ACTIVE,
            Assessment.reviewed_at.is_(None),
        )
        .distinct()
        .order_by(Patient.identifier)
    ).all()
    return render_template(
        "review/index.html",
        entries=entries,
        total=total,
        patients=patients,
        patient_id=patient_id,
        scale_key=scale_key,
        scales=scales(),
        sign_form=SignForm(formdata=None),
    )
