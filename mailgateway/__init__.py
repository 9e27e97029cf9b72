"""The mail gateway process: the SMTP listener and the IMAP poller hand mail to
the core's pipeline (`helpdesk.inbound`), the sender delivers the outbox, the
periodic jobs run the lifecycle. Transports and loops only (docs/architecture.md)."""
