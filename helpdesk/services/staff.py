"""Staff accounts. Passwords are stored only as werkzeug scrypt hashes."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from helpdesk import addresses
from helpdesk import vocabulary as v
from helpdesk.errors import Conflict, ValidationError
from helpdesk.models import StaffUser

MIN_PASSWORD = 10


class StaffService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(
        self, *, email: str, name: str, role: str, password: str | None = None
    ) -> tuple[StaffUser, str | None]:
        """Create a staff user; returns the generated password when none was given."""
        email = addresses.normalize(email)
        errors: dict[str, str] = {}
        if not addresses.is_valid(email):
            errors["email"] = addresses.INVALID
        if not addresses.display_name(name):
            errors["name"] = "is required"
        if role not in v.ROLES:
            errors["role"] = f"must be one of {', '.join(v.ROLES)}"
        if password is not None and len(password) < MIN_PASSWORD:
            errors["password"] = f"must be at least {MIN_PASSWORD} characters"
        if errors:
            raise ValidationError(errors)
        if self.by_email(email) is not None:
            raise Conflict(f"A staff user {email} already exists.")
        generated = None
        if password is None:
            password = generated = secrets.token_urlsafe(12)
        user = StaffUser(email=email, name=addresses.display_name(name), role=role, is_active=True)
        user.set_password(password)
        self.session.add(user)
        self.session.flush()
        return user, generated

    def by_email(self, email: str) -> StaffUser | None:
        return self.session.execute(
            select(StaffUser).where(StaffUser.email == addresses.normalize(email))
        ).scalar_one_or_none()

    def count_admins(self) -> int:
        return self.session.execute(
            select(func.count(StaffUser.id)).where(StaffUser.role == "admin")
        ).scalar_one()

    def set_active(self, user: StaffUser, active: bool) -> None:
        """Deactivated staff cannot log in, and their open sessions and tokens stop
        working at their next request; their name stays on what they wrote."""
        user.is_active = active
        self.session.flush()
