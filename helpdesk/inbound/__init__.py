"""The inbound mail pipeline: raw bytes to a recorded outcome (docs/mail-gateway.md).

Pure logic on the database session, no transport: the gateway's SMTP listener and
IMAP poller hand it bytes and an envelope (`ingest`), and the portal and the CLI
review its quarantine (`quarantine`)."""
