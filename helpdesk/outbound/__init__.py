"""Outbound mail as the helpdesk writes it: notifications composed from templates
(`compose`). Sending them is the gateway's (`mailgateway.outbound`)."""
