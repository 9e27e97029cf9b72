"""URL building for the suite: werkzeug's builders exactly as production makes them,
each made once for the session.

Every test builds an app, and building one made two URL builders for each of its ~85
routes, werkzeug writing and compiling Python source for each: 25 of the app's 27 ms,
about two minutes of the suite. A builder is made from its route alone (the rule, its
defaults, whether unknown values are appended; werkzeug's own converters, which every
app of this process uses) and is called with the route as its first argument, so the
apps of the suite can share one: the first of a route is made by werkzeug's code, a
repeat gets that same function back. Processes the tests start build their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from werkzeug.routing import Rule

_Builder = Callable[..., tuple[str, str]]
_builders: dict[tuple[object, ...], _Builder] = {}
_make_builder = Rule._compile_builder


def _shared_builder(rule: Rule, append_unknown: bool = True) -> _Builder:
    assert rule.map is not None, "rule not bound"
    key = (
        rule.rule,
        rule.host if rule.map.host_matching else rule.subdomain,
        rule.merge_slashes,
        repr(rule.defaults),
        append_unknown,
    )
    builder = _builders.get(key)
    if builder is None:
        builder = _builders[key] = _make_builder(rule, append_unknown)
    return builder


@contextmanager
def shared() -> Iterator[None]:
    """Apps built while the context is open share their URL builders."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Rule, "_compile_builder", _shared_builder)
        yield
