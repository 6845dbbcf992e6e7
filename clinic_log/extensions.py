"""Unbound extension instances, bound to the app in ``create_app``.

Models and services import from here, never from ``clinic_log`` itself, so there is no
import cycle between the factory and the code it registers.
"""

from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
# A session cookie replayed from another browser (other address or user agent) is dropped.
login_manager.session_protection = "strong"
csrf = CSRFProtect()
