"""The mail gateway: turns customer email into tickets through TicketsService."""
