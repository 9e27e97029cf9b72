"""Extension singletons, importable by the portal, the API and the gateway alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData, Table
from sqlalchemy.orm import DeclarativeBase, Session

from helpdesk.security import client_key

# Named constraints let Alembic alter them later, including SQLite's batch mode.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Every model maps one table (SQLAlchemy types it as any FromClause).
    __table__: ClassVar[Table]


class _SQLAlchemy(SQLAlchemy):
    # `db.session` is a scoped_session standing for the current context's Session,
    # whose methods it proxies; typed as that Session, so the services, which take a
    # `Session`, accept it.
    session: Session  # type: ignore[assignment]


db = _SQLAlchemy(model_class=Base)

# What models subclass: Flask-SQLAlchemy's `db.Model` at run time; for the type
# checker the declarative base it is built from (it cannot see `db.Model`).
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model

migrate = Migrate()
jwt = JWTManager()


class DeclaredLimiter(Limiter):
    """Flask-Limiter without its before-request check when there is nothing for it
    to check.

    That check exists for default and application-wide limits. This app declares
    its limits on the views they guard (login, tracker), and a decorated view
    checks them in its own wrapper; with no default or application limit the
    check found nothing, yet cost about 5 % of the CPU of creating a ticket over
    the API (6.7 → 6.3 million instructions per request). An operator who
    configures `RATELIMIT_DEFAULT` or `RATELIMIT_APPLICATION` gets the check back."""

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        manager = self.limit_manager
        if in_middleware and not (manager.default_limits or manager.application_limits):
            return
        super()._check_request_limit(callable_name, in_middleware)


# Limits are declared where they apply (login, tracker); none by default. A limit
# keyed by nothing else counts the client's address, an IPv6 client's network.
limiter = DeclaredLimiter(key_func=client_key, default_limits=[])
csrf = CSRFProtect()
