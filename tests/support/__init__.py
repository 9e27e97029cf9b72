"""What the tests and the benchmarks share: the private servers (PostgreSQL,
Dovecot, the SMTP sink), building and sending mail, the pathological mail
generator, and the worker functions run in separate processes. No tests here."""
