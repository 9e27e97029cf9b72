"""`flask --app wsgi …` admin commands (docs/operations.md). Thin: parse, call a service, print."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from helpdesk import addresses, numbering
from helpdesk import vocabulary as v
from helpdesk.database import transaction
from helpdesk.errors import DomainError
from helpdesk.inputs import MAX_PAGE
from helpdesk.services import (
    Actor,
    assistant,
    contacts,
    idempotency,
    lifecycle_jobs,
    mailboxes,
    notifications,
    revoked_tokens,
)
from helpdesk.services.integrations import IntegrationsService
from helpdesk.services.queue import MAX_PER_PAGE
from helpdesk.services.senders import SendersService
from helpdesk.services.staff import StaffService
from helpdesk.services.teams import TeamsService

senders_cli = AppGroup("senders", help="Authorized senders: addresses or @domains.")
tickets_cli = AppGroup("tickets", help="Ticket numbering.")
quarantine_cli = AppGroup("quarantine", help="Review mail held by the gateway.")
outbox_cli = AppGroup("outbox", help="Notifications waiting, sent, failed or skipped.")
integrations_cli = AppGroup("integrations", help="Systems that call the API for customers.")
teams_cli = AppGroup("teams", help="Teams, their members, and which ticket types go to which team.")
addresses_cli = AppGroup("addresses", help="Customers' and staff members' mail addresses.")
mailboxes_cli = AppGroup("mailboxes", help="What the gateway remembers of each IMAP mailbox.")
CLI_REVIEWER = Actor.system("cli")


# Characters a terminal acts on rather than shows: C0 controls other than tab and
# newline, DEL, C1 controls (0x9b starts a sequence like ESC [ does) and the
# bidirectional overrides that make a line read other than it is.
_UNSHOWN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _shown(text: str) -> str:
    """Text from a mail, fit for the operator's terminal: what a terminal would act
    on (an escape sequence can retitle the window, clear the screen or, on some
    terminals, write to the clipboard) is printed as a `\\x..` escape instead."""
    return _UNSHOWN.sub(lambda match: match.group().encode("unicode_escape").decode(), text)


def _domain_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Show a domain error as a one-line message and exit status 1, not a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DomainError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


@click.command("create-staff")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", required=True, type=click.Choice(["admin", "agent"]))
@click.option("--password", default=None, help="Generated and printed when omitted.")
@_domain_errors
def create_staff(email: str, name: str, role: str, password: str | None) -> None:
    """Create a staff user (admin or agent)."""
    with transaction() as session:
        user, generated = StaffService(session).create(email=email, name=name, role=role, password=password)
    click.echo(f"Created {user.role} {user.email}")
    if generated:
        click.echo(f"Password: {generated}")


@click.command("create-first-admin")
@click.option("--email", default="admin@helpdesk.local", show_default=True)
def create_first_admin(email: str) -> None:
    """Create an admin with a generated password, only if there is no admin yet."""
    with transaction() as session:
        service = StaffService(session)
        if service.count_admins():
            click.echo("An admin already exists; nothing to do.")
            return
        user, generated = service.create(email=email, name="Administrator", role="admin")
    click.echo(f"First admin: {user.email}  password: {generated}")


@senders_cli.command("add")
@click.argument("pattern")
@click.option("--organization", required=True)
@_domain_errors
def senders_add(pattern: str, organization: str) -> None:
    """Authorize an address (a@b.c) or a whole domain (@b.c)."""
    with transaction() as session:
        rule = SendersService(session).add(pattern, organization)
        click.echo(f"Authorized {rule.pattern} for {rule.organization.name}")


@senders_cli.command("list")
def senders_list() -> None:
    with transaction() as session:
        rules = SendersService(session).list()
        if not rules:
            click.echo("No authorized senders.")
        for rule in rules:
            kind = "domain " if rule.is_domain else "address"
            click.echo(f"{kind}  {rule.pattern:<40} {rule.organization.name}")


@senders_cli.command("remove")
@click.argument("pattern")
@_domain_errors
def senders_remove(pattern: str) -> None:
    with transaction() as session:
        SendersService(session).remove(pattern)
    click.echo(f"Removed {pattern.strip().lower()}")


@tickets_cli.command("set-next")
@click.argument("next_value", metavar="N", type=int)
@_domain_errors
def tickets_set_next(next_value: int) -> None:
    """Start the sequence at N; refused at or below the highest number in use."""
    with transaction() as session:
        numbering.set_next(session, next_value)
    click.echo(f"The next ticket will be {numbering.display_number(next_value, current_app.config)}")


@quarantine_cli.command("list")
@click.option("--page", default=1, show_default=True, type=click.IntRange(min=1, max=MAX_PAGE))
@click.option("--per-page", default=50, show_default=True, type=click.IntRange(min=1, max=MAX_PER_PAGE))
@click.option("--newest", is_flag=True, help="Newest first.")
def quarantine_list(page: int, per_page: int, newest: bool) -> None:
    """Mail waiting for review, oldest first (`--newest`: the other way round), a page
    at a time: anyone can get mail held, and a terminal printing all of it buries
    the mail to review."""
    from helpdesk.inbound import quarantine

    with transaction() as session:
        held = quarantine.pending(session, page=page, per_page=per_page, newest=newest)
        if not held.total:
            click.echo("Quarantine is empty.")
            return
        for item in held.items:
            mail = item.inbound_mail
            click.echo(
                f"{item.id:>6}  {item.created_at:%Y-%m-%d %H:%M}  "
                f"{_shown(mail.from_address or mail.mail_from or '?'):<32} "
                f"{mail.subject[:50]!r}  — {_shown(item.reason)}"
            )
        more = f"; --page {page + 1}{' --newest' if newest else ''} for more" if page < held.pages else ""
        click.echo(f"Page {page} of {held.pages} ({held.total} waiting){more}.")


@quarantine_cli.command("show")
@click.argument("item_id", type=int)
@_domain_errors
def quarantine_show(item_id: int) -> None:
    """Print the item's reason and the raw mail."""
    from helpdesk.inbound import quarantine

    with transaction() as session:
        item = quarantine.get(session, item_id)
        click.echo(f"Item {item.id} ({item.state}): {_shown(item.reason)}")
        click.echo(
            f"Envelope from {item.inbound_mail.mail_from!r} to "
            f"{item.inbound_mail.recipients!r} via {item.inbound_mail.channel}"
        )
        click.echo("-" * 72)
        click.echo(_shown(item.inbound_mail.raw.decode("utf-8", "replace")))


@quarantine_cli.command("approve")
@click.argument("item_id", type=int)
@_domain_errors
def quarantine_approve(item_id: int) -> None:
    """Create the ticket (or append the reply) as the pipeline would have."""
    from helpdesk.inbound import quarantine

    with transaction() as session:
        result = quarantine.approve(session, item_id, CLI_REVIEWER, current_app.config)
    click.echo(f"Approved {item_id}: {result.outcome.value} {result.ticket_number}")


@quarantine_cli.command("reject")
@click.argument("item_id", type=int)
@click.option("--spam", is_flag=True, help="Mark as spam instead of plain rejection.")
@_domain_errors
def quarantine_reject(item_id: int, spam: bool) -> None:
    from helpdesk.inbound import quarantine

    with transaction() as session:
        quarantine.reject(session, item_id, CLI_REVIEWER, current_app.config["AGENT_VISIBILITY"], spam=spam)
    click.echo(f"{'Marked as spam' if spam else 'Rejected'}: {item_id}")


@outbox_cli.command("list")
@click.option("--state", default=None, help="Only rows in this state (e.g. failed).")
@click.option("--limit", default=50, show_default=True)
@_domain_errors
def outbox_list(state: str | None, limit: int) -> None:
    """The newest notifications with their state and, when not sent, why."""
    with transaction() as session:
        rows = notifications.outbox(session, state, limit)
        if not rows:
            click.echo("The outbox is empty." if state is None else f"No {state} rows.")
        for row in rows:
            why = f"  — {_shown(row.last_error)}" if row.last_error else ""
            click.echo(
                f"{row.id:>6}  {row.created_at:%Y-%m-%d %H:%M}  {row.state:<8} "
                f"{row.kind:<8} {row.to_address:<32} attempts {row.attempts}{why}"
            )


@outbox_cli.command("retry")
@click.argument("row_id", type=int)
@_domain_errors
def outbox_retry(row_id: int) -> None:
    """Send a failed or skipped notification again."""
    with transaction() as session:
        notifications.retry(session, row_id)
    click.echo(f"Outbox row {row_id} will be sent again.")


@click.command("sla-check")
def sla_check() -> None:
    """Mark SLA breaches (each once) and queue their alerts; safe from cron."""
    with transaction() as session:
        result = lifecycle_jobs.check_sla(session, current_app.config)
    click.echo(result.summary())


@click.command("auto-close")
def auto_close() -> None:
    """Close tickets resolved AUTO_CLOSE_AFTER ago without a reply; safe from cron."""
    with transaction() as session:
        result = lifecycle_jobs.auto_close(session, current_app.config)
    click.echo(result.summary())


@click.command("idempotency-keys-sweep")
def idempotency_keys_sweep() -> None:
    """Delete API idempotency keys older than IDEMPOTENCY_KEY_LIFETIME; safe from cron."""
    with transaction() as session:
        result = idempotency.sweep(session, current_app.config["IDEMPOTENCY_KEY_LIFETIME"])
    click.echo(result.summary())


@click.command("assistant-calls-sweep")
def assistant_calls_sweep() -> None:
    """Delete assistant call ids older than the repeat window (a day); safe from cron."""
    with transaction() as session:
        result = assistant.sweep_calls(session)
    click.echo(result.summary())


@click.command("revoked-tokens-sweep")
def revoked_tokens_sweep() -> None:
    """Delete API token revocations an hour past their token's expiry; safe from cron."""
    with transaction() as session:
        result = revoked_tokens.sweep(session, current_app.config)
    click.echo(result.summary())


@integrations_cli.command("add")
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(v.INTEGRATION_KINDS))
@_domain_errors
def integrations_add(name: str, kind: str) -> None:
    """Add an integration and print its token, once: only its hash is kept."""
    with transaction() as session:
        integration, token = IntegrationsService(session).add(name, kind)
        click.echo(f"Integration {integration.name} ({integration.kind}) added. Its token, shown only now:")
        click.echo(token)


@integrations_cli.command("list")
def integrations_list() -> None:
    with transaction() as session:
        items = IntegrationsService(session).list()
        if not items:
            click.echo("No integrations.")
        for item in items:
            state = f"revoked {item.revoked_at:%Y-%m-%d %H:%M}" if item.revoked_at else "active"
            click.echo(f"{item.name:<32} {item.kind:<10} added {item.created_at:%Y-%m-%d %H:%M}  {state}")


@integrations_cli.command("revoke")
@click.argument("name")
@_domain_errors
def integrations_revoke(name: str) -> None:
    """End the integration's token at once."""
    with transaction() as session:
        IntegrationsService(session).revoke(name)
    click.echo(f"Integration {name} revoked.")


@teams_cli.command("list")
def teams_list() -> None:
    """Every team with its members, then the routing table."""
    with transaction() as session:
        service = TeamsService(session)
        for team in service.teams():
            members = ", ".join(user.email for user in team.members) or "no members"
            click.echo(f"{team.name:<24} {members}")
        click.echo("Routing:")
        for ticket_type, routed in service.routes().items():
            click.echo(f"  {ticket_type:<24} → {routed.name if routed else 'no team'}")


@teams_cli.command("add")
@click.argument("name")
@_domain_errors
def teams_add(name: str) -> None:
    with transaction() as session:
        team = TeamsService(session).add(name)
        click.echo(f"Team {team.name} added.")


@teams_cli.command("remove")
@click.argument("name")
@_domain_errors
def teams_remove(name: str) -> None:
    """Delete a team that has no tickets and no ticket types routed to it."""
    with transaction() as session:
        TeamsService(session).remove(name)
    click.echo(f"Team {name} removed.")


@teams_cli.command("member")
@click.argument("action", type=click.Choice(("add", "remove")))
@click.argument("team")
@click.argument("email")
@_domain_errors
def teams_member(action: str, team: str, email: str) -> None:
    """Add a staff member to a team, or take them out."""
    with transaction() as session:
        user = StaffService(session).by_email(email)
        if user is None:
            raise click.ClickException(f"No staff member {_shown(email)}.")
        service = TeamsService(session)
        if action == "add":
            service.add_member(team, user.id)
        else:
            service.remove_member(team, user.id)
    click.echo(f"{email} {'added to' if action == 'add' else 'removed from'} {team}.")


@teams_cli.command("route")
@click.argument("ticket_type", type=click.Choice(v.TICKET_TYPES))
@click.argument("team")
@_domain_errors
def teams_route(ticket_type: str, team: str) -> None:
    """Send new tickets of a type to a team (`none`: to no team)."""
    with transaction() as session:
        TeamsService(session).set_route(ticket_type, None if team == "none" else team)
    click.echo(f"New {ticket_type} tickets go to {team}.")


@mailboxes_cli.command("forget")
@click.argument("key")
@_domain_errors
def mailboxes_forget(key: str) -> None:
    """Forget a retired IMAP mailbox (KEY as the Mail page shows it: user@host:port/MAILBOX)."""
    with transaction() as session:
        mailboxes.forget(session, key)
    click.echo(f"Forgot {_shown(key)}.")


@addresses_cli.command("deliverable")
@click.argument("address")
def addresses_deliverable(address: str) -> None:
    """Mail to ADDRESS works again: clear the mark a bounce set, so notifications go to it."""
    normalized = addresses.normalize(address)
    if not addresses.is_valid(normalized):
        raise click.ClickException(f"{_shown(address)} {addresses.INVALID}.")
    with transaction() as session:
        cleared = contacts.clear_undeliverable(session, normalized, CLI_REVIEWER)
    if cleared:
        click.echo(f"Mail to {_shown(normalized)} goes again from now on.")
    else:
        click.echo(f"{_shown(normalized)} was not marked undeliverable; nothing to do.")


def init_app(app: Flask) -> None:
    for command in (
        create_staff,
        create_first_admin,
        senders_cli,
        tickets_cli,
        quarantine_cli,
        outbox_cli,
        integrations_cli,
        teams_cli,
        mailboxes_cli,
        addresses_cli,
        sla_check,
        auto_close,
        idempotency_keys_sweep,
        assistant_calls_sweep,
        revoked_tokens_sweep,
    ):
        app.cli.add_command(command)
