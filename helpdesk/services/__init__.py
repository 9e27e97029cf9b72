"""Business rules. Plain values in, domain objects or `helpdesk.errors` out; the
caller owns the transaction (it commits or rolls back), so the gateway can record a
mail and its ticket in one commit."""

from helpdesk.services.actors import Actor
from helpdesk.services.queue import Page, QueueService, TicketFilters
from helpdesk.services.tickets import TicketsService

__all__ = ["Actor", "Page", "QueueService", "TicketFilters", "TicketsService"]
