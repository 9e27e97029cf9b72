"""The one HTML sanitizer: mail HTML is cleaned with nh3's allowlist when stored
(`helpdesk.inbound.storage`) and again when shown, so a row written by an older version
or by hand can never put script into a staff member's browser."""

from __future__ import annotations

import nh3
from markupsafe import Markup

URL_SCHEMES = {"http", "https", "mailto", "cid"}


def clean(html: str) -> str:
    """Scripts, event handlers, styles and `javascript:` URLs removed; links get
    `rel="noopener noreferrer nofollow"`; `cid:` images kept."""
    return nh3.clean(html, url_schemes=URL_SCHEMES, link_rel="noopener noreferrer nofollow")


def sanitized(html: str | None) -> Markup:
    """For templates: cleaned, then marked safe for Jinja."""
    return Markup(clean(html or ""))
