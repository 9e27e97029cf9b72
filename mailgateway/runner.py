"""Starts the gateway's pieces and stops them on SIGTERM/SIGINT.

The main thread starts everything, then waits for SIGTERM/SIGINT with
`process.wait_for_stop_signal` (blocked by `process.configure_process`; no
Python signal handler runs), looking after the extra SMTP listener processes
once a second.

The SMTP listener runs in its own thread (aiosmtpd's Controller), and
`SMTP_PROCESSES - 1` more listen on the same port from their own processes
(`mailgateway.listeners`; all of them listen, or the gateway does not start);
each IMAP mailbox of `IMAP_URL` gets a poller thread,
the outbound sender (`outbound.Sender`, unless `OUTBOUND_SMTP_URL` is empty) one
more, and the lifecycle jobs (`periodic.LifecycleJobs`: SLA check and auto-close
every `LIFECYCLE_JOBS_INTERVAL`) another; those three are `loop.Loop`s, one stop
event for all. On a stop signal the pollers finish the
message in hand (committed and moved, or left in place) and log out, the sender
finishes the mail in hand and hands the rest of its batch back to the outbox,
the jobs finish the run in hand, the listeners close their sockets and stop
once the mails in flight were committed and answered (within
`smtp.STOP_GRACE_SECONDS`), and the process exits.
"""

from __future__ import annotations

import faulthandler
import logging
import threading

from flask import Flask

from helpdesk import schema
from mailgateway.imap import ImapPoller, parse_imap_urls
from mailgateway.listeners import ListenerProcesses
from mailgateway.outbound import Sender
from mailgateway.periodic import LifecycleJobs
from mailgateway.process import wait_for_stop_signal
from mailgateway.smtp import SupportHandler, make_controller, start_listening

log = logging.getLogger("mailgateway")


#: A stop that takes longer than this dumps every thread's stack to stderr, so a
#: hung shutdown says where it hangs.
SLOW_STOP_SECONDS = 10.0


def run(app: Flask) -> None:
    stopping = threading.Event()
    pollers = [ImapPoller(app, source, stopping) for source in parse_imap_urls(app.config["IMAP_URL"])]
    sender = Sender(app, stopping)
    # After the settings above are judged, before any mail is taken (docs/operations.md).
    schema.refuse_when_behind(app)
    processes = max(1, app.config["SMTP_PROCESSES"])
    handler = SupportHandler(app)
    controller = make_controller(app, handler, reuse_port=processes > 1)
    start_listening(controller, handler, app.config["SMTP_LISTEN"])
    listeners = ListenerProcesses(processes - 1, handler.takings)
    threads = [
        threading.Thread(target=poller.run, name=f"imap-{index}") for index, poller in enumerate(pollers)
    ]
    threads.append(threading.Thread(target=sender.run, name="outbound"))
    threads.append(threading.Thread(target=LifecycleJobs(app, stopping).run, name="lifecycle"))
    try:
        listeners.start()  # each listening, or ConfigurationError and all of it stopped
        for thread in threads:
            thread.start()
        outbound = sender.server
        log.info(
            "gateway started for %s: SMTP on %s (%d process%s), IMAP %s, outbound %s (database %s)",
            ", ".join(app.config["SUPPORT_ADDRESSES"]),
            app.config["SMTP_LISTEN"],
            processes,
            "" if processes == 1 else "es",
            ", ".join(p.source.key for p in pollers) or "off",
            f"{outbound.host}:{outbound.port}" if outbound else "off",
            app.config["SQLALCHEMY_DATABASE_URI"].split("://", 1)[0],
        )
        while (received := wait_for_stop_signal(1.0)) is None:
            listeners.watch()
        log.info("received %s, stopping", received.name)
    finally:
        handler.takings.stopping()  # a kill from now on is the stop's, no mail's death
        stopping.set()
        faulthandler.dump_traceback_later(SLOW_STOP_SECONDS)
        # The listening sockets close first, then the mails being stored are
        # answered (docs/operations.md, "Stopping").
        listeners.terminate()
        controller.stop()
        listeners.stop()
        for thread in threads:
            if thread.ident is not None:
                thread.join()
        handler.close()
        faulthandler.cancel_dump_traceback_later()
        log.info("gateway stopped")
