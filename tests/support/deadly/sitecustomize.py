"""Put on PYTHONPATH of a gateway started by a test, this makes the processes of that
gateway die, as a crash in C code or the out-of-memory killer ends them, when they
parse a mail carrying DEADLY_FIELD: no mail is known to kill the gateway (each one
found is a bug, fixed), so the test brings its own. Nothing of the product knows
of it; only the standard library's feed parser, which the pipeline parses with, is
wrapped. A mail carrying SLOW_FIELD followed by a number of seconds takes that long
to parse, so a test can have a mail in flight for as long as it needs."""

import os
import re
import signal
import time
from email.feedparser import FeedParser

DEADLY_FIELD = "X-Test-Deadly: kill"
SLOW_FIELD = "X-Test-Slow"

_feed = FeedParser.feed
_SLOW = re.compile(SLOW_FIELD + r": (\d+)")


def _deadly_feed(self: FeedParser, data: str) -> None:
    if DEADLY_FIELD in data:
        os.kill(os.getpid(), signal.SIGKILL)
    if slow := _SLOW.search(data):
        time.sleep(int(slow.group(1)))
    _feed(self, data)


FeedParser.feed = _deadly_feed  # type: ignore[method-assign]
