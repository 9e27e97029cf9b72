"""Who is calling: credentials, API bearer tokens (flask-jwt-extended), role rules.

Access tokens are short-lived (`JWT_ACCESS_TOKEN_EXPIRES`); refresh tokens last
longer, can only mint tokens, and rotate: each use revokes the refresh token (by its
`jti`) and hands out a new pair of the same family (a login starts one), which ends
with the family's lifetime, counted from the login (`JWT_REFRESH_TOKEN_EXPIRES`). A revoked
refresh token presented again was copied, so its whole family is revoked. Every
token carries the staff member's session version; logout, a password change, a
role change and deactivation move it on and so end every token and portal session
of that person (docs/security.md). Every request re-reads the staff member with the
revocation check, in one statement. Failures answer with the API's JSON error
envelope (docs/web.md), never flask-jwt-extended's own shapes.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import lru_cache, wraps
from typing import Any, TypeVar, cast

from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    current_user,
    verify_jwt_in_request,
)
from flask_limiter import HeaderNames
from limits import RateLimitItem, parse_many
from sqlalchemy import bindparam, exists, select
from sqlalchemy.exc import DBAPIError
from werkzeug.security import check_password_hash, generate_password_hash

from helpdesk import addresses, limit_storage
from helpdesk.clock import now
from helpdesk.database import OutcomeUnknown, commit_or_unknown, insert_ignoring
from helpdesk.errors import ValidationError
from helpdesk.extensions import db, jwt, limiter
from helpdesk.http_errors import answer_database_error, answer_outcome_unknown, error_response
from helpdesk.inputs import positive_int, unstorable
from helpdesk.models import RevokedToken, StaffUser
from helpdesk.services import Actor
from helpdesk.services.actors import StaffMember
from helpdesk.services.integrations import IntegrationsService
from helpdesk.services.staff import StaffService

F = TypeVar("F", bound=Callable[..., Any])

ROLE_RANK = {"agent": 1, "admin": 2}
MAX_LOGIN_EMAIL = 320  # characters of the address a login reads; an address is no longer


def _per_address() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT"])


def _per_account() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT_PER_ACCOUNT"])


def _account_key(body: Any) -> str:
    """The account a login names, from the body as its view reads it (the portal's
    form, the API's JSON), hashed: the limit runs before the form is checked, so the
    text is anything the client sent (a NUL that PostgreSQL refuses to store), and
    the counters need no addresses in them."""
    email = body.get("email") if isinstance(body, Mapping) else None
    if not isinstance(email, str):
        return "account:?"
    # Cut where the login reads it, or padding after the address would name a new
    # budget for the same account.
    return _key_of(email[:MAX_LOGIN_EMAIL])


def _key_of(email: str) -> str:
    """One budget per account, whichever spelling of an internationalised domain
    names it: the sign-in takes either (`StaffService.by_email`), and a budget per
    spelling gave `ana@bücher.example` twice the guesses (docs/security.md, "Staff
    portal review")."""
    named = min(addresses.either_form(addresses.normalize(email)))
    return "account:" + hashlib.sha256(named.encode("utf-8", "replace")).hexdigest()


# The portal's login form and the API's login draw from the same budgets, which count
# failed attempts only: per client address (many staff behind one NAT address log in
# all morning without using it up) and per account (guessing one account's password
# from many addresses stops there). Flask-Limiter counts an attempt before the view,
# in one step of the shared store that also answers whether it was within the limit,
# so attempts at the same moment each take their own place; `_failures_only` gives
# the place back unless the attempt failed a password check. See docs/security.md.
LOGIN_SCOPES = ("login", "login-account")
API_SCOPE = "api"  # the counters of the budget per API caller (`_over_api_budget`)
_per_address_limit = limiter.shared_limit(_per_address, scope="login", methods=["POST"])


def _failures_only(limits: Callable[[F], F], view: F) -> F:
    """`view` under `limits`, keeping this request's places in the login budgets only
    if a password check failed in it (`failed_password`). A refused attempt (429), a
    success and a request refused before any check give theirs back."""

    @wraps(view)
    def counted(*args: Any, **kwargs: Any) -> Any:
        g.login_counted_at = time.time()  # the limits took their places just now
        return view(*args, **kwargs)

    limited = limits(cast(F, counted))

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return limited(*args, **kwargs)
        finally:
            if not g.get("failed_password"):
                _give_back()

    return cast(F, wrapper)


def _give_back() -> None:
    """Give each place back to the window it was taken in, and to no later one: a
    slow login crossing a window's end erased a failure of the next window."""
    storage = limiter.limiter.storage
    counted_at = g.get("login_counted_at", time.time())  # unset: refused at once (429)
    for taken in limiter.current_limits:
        if taken.request_args[-1] not in LOGIN_SCOPES:
            continue
        period = taken.limit.get_expiry()
        if storage.get_expiry(taken.key) - period > counted_at:
            continue  # the window it was taken in has ended; another began since
        limit_storage.give_back(storage, taken.key, period)


def failed_password() -> None:
    """Note that this request checked a password and it was wrong: its places in the
    login budgets are kept."""
    g.failed_password = True


def login_rate_limit(read: Callable[[], Any]) -> Callable[[F], F]:
    """The login budgets of a view that reads its body with `read` (the portal its
    form, the API `payload.json_value`): the per-account key reads it the same way.
    A key reading a form where the API read JSON sent as text/plain counted those
    attempts under no account (docs/security.md, "Password guessing")."""
    per_account_limit = limiter.shared_limit(
        _per_account, scope="login-account", key_func=lambda: _account_key(read()), methods=["POST"]
    )

    def decorator(view: F) -> F:
        return _failures_only(lambda counted: cast(F, _per_address_limit(per_account_limit(counted))), view)

    return decorator


def current_password_limit(caller_email: Callable[[], str]) -> Callable[[F], F]:
    """For a password change, under the login check: a wrong current password is a
    failed login of the caller's account, from the same budget, so a session or a
    token does not give endless guesses at the password (docs/security.md). The view
    reports a wrong one with `wrong_current_password`."""
    account_limit = limiter.shared_limit(
        _per_account, scope="login-account", key_func=lambda: _key_of(caller_email()), methods=["POST"]
    )

    def decorator(view: F) -> F:
        return _failures_only(lambda counted: cast(F, account_limit(counted)), view)

    return decorator


def wrong_current_password(error: ValidationError) -> None:
    """Note for `current_password_limit` whether a refused change named a wrong
    current password (a too-short new one costs nothing)."""
    if "current_password" in error.fields:
        failed_password()


def check_credentials(email: str, password: str) -> StaffUser | None:
    """The active staff user with these credentials, or None. An unknown address
    costs the same hash check as a wrong password, so timing does not tell them apart.
    An address no database can hold (a NUL: PostgreSQL refuses the text, a 500 from
    the portal's form) is an unknown one, never looked up."""
    email = email[:MAX_LOGIN_EMAIL]
    user = (
        None
        if unstorable(email)
        else StaffService(db.session).by_email(email)  # either spelling of an IDN domain
    )
    if user is None:
        check_password_hash(_decoy_hash(), password)
        failed_password()
        return None
    if not user.check_password(password) or not user.is_active:
        failed_password()
        return None
    return user


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    return generate_password_hash("not anyone's password")


def init_app(app: Flask) -> None:
    app.config.setdefault("JWT_TOKEN_LOCATION", ["headers"])
    app.config.setdefault("JWT_ERROR_MESSAGE_KEY", "message")
    jwt.init_app(app)
    app.after_request(_budget_headers)


def issue_tokens(user: StaffUser | TokenStaff, used: Mapping[str, Any] | None = None) -> dict[str, str]:
    """An access and a refresh token. A login starts a new family; a refresh goes on
    with the family, and the login time, of the refresh token it `used`. No token of
    a family lives past JWT_REFRESH_TOKEN_EXPIRES from the login that began it: a
    refresh answering a full lifetime each time kept a stolen refresh token alive
    for as long as it was used now and then (docs/security.md, "Sessions and tokens")."""
    moment = datetime.now(timezone.utc)
    login = _login_time(used) if used is not None else int(moment.timestamp())
    config = current_app.config
    left = datetime.fromtimestamp(login, timezone.utc) + config["JWT_REFRESH_TOKEN_EXPIRES"] - moment
    family = (used or {}).get("fam") or uuid.uuid4().hex
    claims = {"role": user.role, "sv": user.session_version, "fam": family, "auth_time": login}
    access = min(config["JWT_ACCESS_TOKEN_EXPIRES"], left)
    return {
        "access_token": create_access_token(identity=user, additional_claims=claims, expires_delta=access),
        "refresh_token": create_refresh_token(identity=user, additional_claims=claims, expires_delta=left),
    }


def _login_time(claims: Mapping[str, Any]) -> int:
    """When the login that began a token's family was made (epoch seconds). A token
    from before this release carries none, and counts from its own issue."""
    login = claims.get("auth_time")
    return login if type(login) is int else int(claims["iat"])


def revoke(jti: str, expires: datetime) -> bool:
    """Refuse a token id (or a family's, `family:…`) until `expires` (naive UTC);
    the caller commits. Revoking twice is harmless; True when this call revoked it
    (False: it was revoked already, maybe by a request running at the same time)."""
    inserted = db.session.execute(
        insert_ignoring(db.session, RevokedToken, ["jti"])
        .values(jti=jti, expires_at=expires)
        .returning(RevokedToken.jti)
    ).first()
    return inserted is not None


def revoke_token(claims: dict[str, Any]) -> bool:
    return revoke(claims["jti"], datetime.fromtimestamp(claims["exp"], timezone.utc).replace(tzinfo=None))


def revoke_family(claims: dict[str, Any]) -> None:
    """Revoke every token of the family, for as long as any of them can live: a
    family member minted now would expire a refresh lifetime from now."""
    lifetime = current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    revoke(_family(claims), now() + lifetime)


def _family(claims: dict[str, Any]) -> str:
    return "family:" + str(claims.get("fam") or claims.get("jti"))


def staff_required(role: str = "agent", *, refresh: bool = False) -> Callable[[F], F]:
    """A valid, unrevoked token of an active staff member with at least `role`; the
    call is counted in the staff member's API budget once the token is proven."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            verify_jwt_in_request(refresh=refresh)
            refused = _over_api_budget(staff_caller())
            if refused is not None:
                return refused
            if ROLE_RANK[current_user.role] < ROLE_RANK[role]:
                return error_response(403, "forbidden", f"This needs the {role} role.")
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorator


def staff_caller() -> str:
    """Who a staff token's call is, for the API budget and for idempotency keys: the
    staff member, whatever the token."""
    return f"staff:{current_user.id}"


def integration_caller() -> str:
    """An integration, as `integration_required` proved it (`g.integration`)."""
    return f"integration:{g.integration.id}"


@lru_cache(maxsize=8)
def parsed_limits(text: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(text))  # config.py refused at start what it cannot read


def _over_api_budget(caller: str) -> tuple[Response, int] | None:
    """Count this call in its proven caller's budget (`API_RATE_LIMIT`); the 429 to
    answer once the budget is spent, None while it lasts (docs/web.md, "Rate limits").
    The counters are the limiter's, in its shared store (helpdesk.limit_storage), so
    every web worker counts into the same budget. Called directly rather than as a
    Flask-Limiter decorator: stacked decorators only check the innermost, and it
    files limits under the view's name, not the caller's. What is left of the budget
    is kept for `_budget_headers` (`g.api_budget`)."""
    if not limiter.enabled:
        return None
    storage = limiter.limiter.storage
    # Under `RATELIMIT_KEY_PREFIX` as Flask-Limiter's own keys, when the operator set one.
    names = [name for name in (limiter._key_prefix, caller, API_SCOPE) if name]
    told: ApiBudget | None = None
    taken: list[tuple[str, int]] = []
    for item in parsed_limits(str(current_app.config["API_RATE_LIMIT"])):
        # A fixed window, as the limiter's default strategy `hit`s it, but with the
        # count it returns kept: what remains needs no second read.
        key = item.key_for(*names)
        count = storage.incr(key, item.get_expiry())
        taken.append((key, item.get_expiry()))
        budget = ApiBudget(item.amount, max(0, item.amount - count), storage.get_expiry(key))
        if count > item.amount:
            g.api_budget = budget
            response, status = error_response(
                429, "too_many_requests", f"Too many API calls from this caller ({item}); retry later."
            )
            response.headers["Retry-After"] = str(max(1, math.ceil(budget.reset - time.time())))
            return response, status
        if told is None or budget.remaining < told.remaining:
            told = budget
    g.api_budget = told
    g.api_places = (time.time(), taken)  # the places taken, and when, for `give_back_api_call`
    return None


def give_back_api_call() -> None:
    """Give this call's places in its caller's budget back: a call refused for the
    customer it names did nothing, and one customer's refused calls must not spend
    the budget of the integration's other customers (docs/integrations.md, "Calls
    per customer"). Each place goes back to the window it was taken in and to no
    later one, as the login's do (`_give_back`); the headers count it as left."""
    places = g.pop("api_places", None)
    if places is None:
        return
    counted_at, taken = places
    storage = limiter.limiter.storage
    for key, period in taken:
        if storage.get_expiry(key) - period > counted_at:
            continue  # the window it was taken in has ended; another began since
        limit_storage.give_back(storage, key, period)
    budget: ApiBudget | None = g.get("api_budget")
    if budget is not None:
        g.api_budget = replace(budget, remaining=min(budget.limit, budget.remaining + 1))


@dataclass(frozen=True)
class ApiBudget:
    """One limit of a caller's API budget as this call left it: its size, what is
    left of it and when its window ends (epoch seconds)."""

    limit: int
    remaining: int
    reset: float


def _budget_headers(response: Response) -> Response:
    """The X-RateLimit headers of the login's budgets (Flask-Limiter's, with its
    names and its switch, RATELIMIT_HEADERS_ENABLED) on every call counted in an API
    budget: the limit the call was refused by, or the one with least left. A view
    under a login budget as well (a password change) tells that one, as the login
    does: Flask-Limiter adds its own headers after these."""
    budget: ApiBudget | None = g.get("api_budget")
    if budget is None or not limiter._headers_enabled or limiter.current_limit is not None:
        return response
    names = limiter._header_mapping
    response.headers[names[HeaderNames.LIMIT]] = str(budget.limit)
    response.headers[names[HeaderNames.REMAINING]] = str(budget.remaining)
    response.headers[names[HeaderNames.RESET]] = str(int(budget.reset + 1))  # as Flask-Limiter rounds it
    return response


def integration_required(*kinds: str) -> Callable[[F], F]:
    """An active integration token of one of `kinds` (docs/integrations.md); the
    integration is `g.integration`. A staff token is no integration token, and an
    integration token opens no staff endpoint (flask-jwt-extended refuses it). The
    call is counted in the integration's API budget once its token is proven."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            token = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""
            if not token:
                return error_response(401, "unauthorized", "An integration token is required.")
            integration = IntegrationsService(db.session).authenticate(token)
            if integration is None:
                return error_response(
                    401, "invalid_token", "The integration token is not valid or was revoked."
                )
            g.integration = integration
            refused = _over_api_budget(integration_caller())
            if refused is not None:
                return refused
            if integration.kind not in kinds:
                return error_response(403, "forbidden", f"This needs {_integration_of(kinds)}.")
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorator


def _integration_of(kinds: tuple[str, ...]) -> str:
    """The integration `kinds` name, with the article of the first: "an assistant
    integration", "a chat or workflow integration" (the 403 read "a assistant")."""
    named = " or ".join(kinds)
    return f"{'an' if named[:1] in 'aeiou' else 'a'} {named} integration"


def current_actor() -> Actor:
    return Actor.staff(current_user)


@jwt.user_identity_loader
def _identity(user: StaffMember) -> str:
    return str(user.id)


@dataclass(frozen=True)
class TokenStaff:
    """The staff member behind an API token, as `current_user`: a row read by the
    revocation check, not an ORM object, because a request needs only who it is and
    which role, and the ORM's loading cost 3 % of creating a ticket over the API."""

    id: int
    name: str
    email: str
    role: str
    is_active: bool
    session_version: int


# Built once, from the tables and run on the session's connection: every API request
# runs it, and composing it or passing it through the ORM cost as much as running it.
_STAFF = StaffUser.__table__.c
_REVOKED = exists().where(RevokedToken.__table__.c.jti.in_([bindparam("jti"), bindparam("family")]))
_TOKEN_STAFF = select(
    _STAFF.id,
    _STAFF.name,
    _STAFF.email,
    _STAFF.role,
    _STAFF.is_active,
    _STAFF.session_version,
    _REVOKED.label("revoked"),
).where(_STAFF.id == bindparam("user_id"))


def _token_staff(claims: dict[str, Any]) -> tuple[TokenStaff | None, bool]:
    """The token's staff member (None if unknown) and whether the token is revoked:
    by its id, by its family, or by a session version that has moved on."""
    ids = {"jti": str(claims.get("jti")), "family": _family(claims)}
    connection = db.session.connection()
    row = connection.execute(_TOKEN_STAFF, {**ids, "user_id": positive_int(claims.get("sub")) or 0}).first()
    if row is None:
        return None, bool(connection.execute(select(_REVOKED), ids).scalar())
    staff = TokenStaff(*row[:6])
    return staff, bool(row.revoked) or claims.get("sv") != staff.session_version


@jwt.token_in_blocklist_loader
def _revoked(_header: dict[str, Any], claims: dict[str, Any]) -> bool:
    """Is the token revoked? The same query reads its staff member for `_lookup`
    (flask-jwt-extended asks both on every request: one round trip, not two)."""
    user, revoked = _token_staff(claims)
    g.token_staff = (claims.get("jti"), user)
    return revoked


@jwt.user_lookup_loader
def _lookup(_header: dict[str, Any], claims: dict[str, Any]) -> TokenStaff | None:
    jti, user = g.get("token_staff", (None, None))
    if jti != claims.get("jti"):
        user, _ = _token_staff(claims)
    return user if user is not None and user.is_active else None


@jwt.unauthorized_loader
def _missing(reason: str) -> tuple[Response, int]:
    return error_response(401, "unauthorized", f"A bearer token is required ({reason}).")


@jwt.invalid_token_loader
def _invalid(reason: str) -> tuple[Response, int]:
    return error_response(401, "invalid_token", f"The token is not valid ({reason}).")


@jwt.expired_token_loader
def _expired(_header: dict[str, Any], _claims: dict[str, Any]) -> tuple[Response, int]:
    return error_response(401, "token_expired", "The token has expired; refresh it or log in again.")


@jwt.revoked_token_loader
def _revoked_answer(_header: dict[str, Any], claims: dict[str, Any]) -> tuple[Response, int]:
    return reused_answer(claims)


def reused_answer(claims: dict[str, Any]) -> Any:
    """The answer to a revoked token. A refresh token used after it was rotated away
    was copied: whoever holds its family's other tokens may be the thief, so they all
    end — also when the two uses came at once and only the revocation's insert saw
    the other (docs/security.md).

    Mostly answered from flask-jwt-extended's error handler, where an exception is
    handled no more: the family's commit failing was a 500. Its errors are answered
    here as any change's are: `503 outcome_unknown` for a lost COMMIT answer, `503
    database_unavailable` for the database failing now (docs/web.md, "A lost
    answer"); presenting the token again ends the family, whichever happened."""
    if claims.get("type") == "refresh":
        db.session.rollback()
        try:
            revoke_family(claims)
            commit_or_unknown(db.session)
        except OutcomeUnknown as exc:
            return answer_outcome_unknown(exc)
        except DBAPIError as exc:
            return answer_database_error(exc)
    return error_response(401, "token_revoked", "The token was revoked; log in again.")


@jwt.user_lookup_error_loader
def _unknown_user(_header: dict[str, Any], _claims: dict[str, Any]) -> tuple[Response, int]:
    return error_response(401, "invalid_token", "The token's staff account is unknown or inactive.")


@jwt.needs_fresh_token_loader
def _not_fresh(_header: dict[str, Any], _claims: dict[str, Any]) -> tuple[Response, int]:
    return error_response(401, "fresh_token_required", "Log in again for this action.")


@jwt.token_verification_failed_loader
def _claims_failed(_header: dict[str, Any], _claims: dict[str, Any]) -> tuple[Response, int]:
    return error_response(401, "invalid_token", "The token's claims were refused.")
