"""Staff accounts. Passwords are stored only as werkzeug scrypt hashes.

Whatever changes what a person may do or how they prove who they are (their
password, their role, whether the account is active) ends every session and token
they hold, as logging out does: `end_sessions` moves their session version, which
every portal request and API call compares (docs/security.md).

The version is moved on in SQL, never written back from the row as a request read
it, and a password is checked and replaced under a lock of the row: two changes of
one account at once (a change and an admin's reset) both count, in some order, and
neither undoes the other (docs/security.md, "Sessions and tokens").
"""

from __future__ import annotations

import secrets

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from helpdesk import addresses
from helpdesk import vocabulary as v
from helpdesk.database import insert_ignoring
from helpdesk.errors import Conflict, ValidationError
from helpdesk.inputs import has_control, unstorable
from helpdesk.models import StaffUser
from helpdesk.services import contacts

MIN_PASSWORD = 10
# The first key of the advisory lock a new account of an internationalised domain is
# made under (`contacts.lock_spellings`), a space apart from the contacts' one.
ACCOUNT_SPELLINGS_LOCK = 0x737466  # "stf"
# Forms and the API cut what they read to this; hashing is what a long one costs.
MAX_PASSWORD = 1000


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
        if password is not None:
            errors.update(_password_errors("password", password))
        if errors:
            raise ValidationError(errors)
        duplicate = Conflict(f"A staff user {email} already exists.")
        # Looked for under a lock on the address's two spellings (PostgreSQL): two
        # accounts made at once, one in each spelling, both found no one, and the
        # insert refuses only the same text.
        contacts.lock_spellings(self.session, email, ACCOUNT_SPELLINGS_LOCK)
        existing = self.by_email(email)
        if existing is not None:  # named as stored: it may be the domain's other spelling
            raise Conflict(f"A staff user {existing.email} already exists.")
        generated = None
        if password is None:
            password = generated = _generated_password()
        # The insert, not the look above, is what refuses a duplicate: the same form
        # sent twice at once passes the look twice (docs/web.md, "A form sent twice").
        user = self.session.scalars(
            insert_ignoring(self.session, StaffUser, ["email"])
            .values(
                email=email,
                name=addresses.display_name(name),
                role=role,
                is_active=True,
                password_hash=StaffUser.hash_password(password),
            )
            .returning(StaffUser)
        ).one_or_none()
        if user is None:
            raise duplicate
        return user, generated

    def by_email(self, email: str) -> StaffUser | None:
        """The account of `email` in either spelling of an internationalised domain
        (`contacts.spelt_as`), the one as written first, else the oldest: one mailbox
        is one account, for creating one (a second spelling is a duplicate) and for
        signing in (`auth.check_credentials`). Accounts made in both spellings before
        keep each its own sign-in (docs/security.md, "Two spellings of a domain")."""
        email = addresses.normalize(email)
        found = self.session.scalars(
            select(StaffUser).where(contacts.spelt_as(StaffUser.email, email)).order_by(StaffUser.id)
        ).all()
        return next((user for user in found if user.email == email), found[0] if found else None)

    def count_admins(self, *, active_only: bool = False) -> int:
        query = select(func.count(StaffUser.id)).where(StaffUser.role == "admin")
        if active_only:
            query = query.where(StaffUser.is_active.is_(True))
        return self.session.execute(query).scalar_one()

    def set_active(self, user: StaffUser, active: bool) -> None:
        """Deactivated staff cannot log in, and their sessions and tokens end; their
        name stays on what they wrote. The last active admin stays active."""
        if user.is_active != active:
            if not active:
                self._keep_an_admin(user)
            user.is_active = active
            self.end_sessions(user)

    def set_role(self, user: StaffUser, role: str) -> None:
        """A new role takes effect at the next login: every session ends."""
        if role not in v.ROLES:
            raise ValidationError({"role": f"must be one of {', '.join(v.ROLES)}"})
        if user.role == role:
            return
        self._keep_an_admin(user)
        user.role = role
        self.end_sessions(user)

    def _keep_an_admin(self, user: StaffUser) -> None:
        """Refuse to take the last active admin away (by role or deactivation). A
        deactivated admin is no admin anyone can be, so only active ones count. Their
        rows are locked before counting: two admins demoting (or deactivating) each
        other at once both counted two, and the helpdesk was left with none."""
        if user.role != "admin" or not user.is_active:
            return
        admins = self.session.execute(
            select(StaffUser.id)
            .where(StaffUser.role == "admin", StaffUser.is_active.is_(True))
            .with_for_update()
        ).all()
        if len(admins) <= 1:
            raise Conflict(f"{user.email} is the only admin; make someone else admin first.")

    def change_password(self, user: StaffUser, current: str, new: str) -> int:
        """The person's own change, proven with the current password; returns the
        session version the change moved to, the one its own session or token goes
        on under. The check reads the row as committed, under its lock: checked
        against the row as the request had read it, a change racing an admin's
        reset passed with the password the reset had replaced, and wrote it back."""
        self._lock(user)
        errors = {} if user.check_password(current) else {"current_password": "is wrong"}
        errors.update(_password_errors("new_password", new))
        if errors:
            raise ValidationError(errors)
        user.set_password(new)
        return self.end_sessions(user)

    def reset_password(self, user: StaffUser) -> str:
        """An admin's reset: a generated password, returned to be shown once. It
        waits for a change of the same account under way, and lands after it."""
        self._lock(user)
        password = _generated_password()
        user.set_password(password)
        self.end_sessions(user)
        return password

    def end_sessions(self, user: StaffUser) -> int:
        """End every portal session and API token of this person; returns their new
        session version. Raised in the statement, so two requests ending them at
        once raise it twice: raised in Python from the row each had read, both
        wrote the same number, and what the later one issued under it lived on."""
        version: int = self.session.execute(
            update(StaffUser)
            .where(StaffUser.id == user.id)
            .values(session_version=StaffUser.session_version + 1)
            .returning(StaffUser.session_version),
            execution_options={"synchronize_session": False},
        ).scalar_one()
        set_committed_value(user, "session_version", version)
        return version

    def _lock(self, user: StaffUser) -> None:
        """Read the person's row again, as committed, and keep others from changing
        it until this transaction ends: `SELECT … FOR UPDATE` on PostgreSQL; SQLite
        holds its write lock from the transaction's first statement anyway
        (helpdesk.database)."""
        self.session.refresh(user, with_for_update=True)


def _password_errors(field: str, password: str) -> dict[str, str]:
    """Why `password` cannot be a new password, if it cannot. Control characters are
    refused: scrypt keys an HMAC with the password, which pads a short key with zero
    bytes, so 'a' and 'a' followed by nine NULs were one password that passed the
    minimum (docs/security.md, "Passwords")."""
    if unstorable(password) or has_control(password):
        return {field: "must not contain control characters"}
    if len(password) < MIN_PASSWORD:
        return {field: f"must be at least {MIN_PASSWORD} characters"}
    if len(password) > MAX_PASSWORD:
        return {field: f"must be at most {MAX_PASSWORD} characters"}
    return {}


def _generated_password() -> str:
    return secrets.token_urlsafe(12)
