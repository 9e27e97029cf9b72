"""The one HTML sanitizer: mail HTML is cleaned with nh3's allowlist when stored
(`helpdesk.inbound.storage`) and again when shown, so a row written by an older version
or by hand can never put script into a staff member's browser, nor make it ask the
portal for anything (docs/security.md, "Mail HTML")."""

from __future__ import annotations

import nh3
from markupsafe import Markup

from helpdesk import html_depth

URL_SCHEMES = {"http", "https", "mailto", "cid"}
# What an image may show: a part of the same mail. The portal is the page's origin,
# so any other source it could load (a relative URL, or the portal's own address)
# would be a request sent with the staff cookie: `<img src="/tickets/TKT-000002">`
# opened that ticket in the viewer's name even in a closed <details>.
IMAGE_SCHEMES = ("cid:",)


def clean(html: str) -> str:
    """Scripts, event handlers, styles and `javascript:` URLs removed; links get
    `rel="noopener noreferrer nofollow"`. Relative URLs are dropped (in customer mail
    they point nowhere but into the portal), and an image keeps only a `cid:` source.
    Nesting deeper than `html_depth.MAX_DEPTH` is flattened first: the parser's work
    grows with its square (docs/security.md, "Bounded work")."""
    return nh3.clean(
        html_depth.bounded(html),
        url_schemes=URL_SCHEMES,
        url_relative="deny",
        attribute_filter=_image_source,
        link_rel="noopener noreferrer nofollow",
    )


def _image_source(tag: str, attribute: str, value: str) -> str | None:
    """nh3's attribute filter: an <img src> other than `cid:` is removed (None)."""
    if tag == "img" and attribute == "src" and not value.strip().lower().startswith(IMAGE_SCHEMES):
        return None
    return value


def sanitized(html: str | None) -> Markup:
    """For templates: cleaned, then marked safe for Jinja."""
    return Markup(clean(html or ""))
