"""A staff member's reading preferences: the language of the portal and of their
staff mail, and the time zone they read times in (docs/languages.md).

"" for either means "not chosen": the browser's language, then DEFAULT_LANGUAGE;
BUSINESS_TIMEZONE. A zone must be one of the IANA zones this machine knows
(`zoneinfo.available_timezones()`, a bounded set), so whatever is stored can be
formatted later without failing.
"""

from __future__ import annotations

from config import LANGUAGES
from helpdesk.errors import ValidationError
from helpdesk.languages import time_zones
from helpdesk.models import StaffUser


def set_preferences(user: StaffUser, language: object, zone: object) -> None:
    """Store both, or neither: ValidationError (fields `language`, `timezone`)
    names what is not a choice."""
    errors: dict[str, str] = {}
    if language != "" and language not in LANGUAGES:
        errors["language"] = f"must be one of {', '.join(LANGUAGES)}"
    if zone != "" and zone not in time_zones():
        errors["timezone"] = "must be an IANA time zone such as America/Mexico_City"
    if errors:
        raise ValidationError(errors)
    user.language, user.timezone = str(language), str(zone)
