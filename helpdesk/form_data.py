"""Reading a form exactly, or not at all (docs/security.md, "Form data").

Werkzeug reads form bodies leniently: a multipart text part's bytes that are not
in its charset become U+FFFD, a part whose headers are not UTF-8 (its name, a file's
name) or a body broken in any other way leaves the whole form empty without a word,
and a urlencoded `%E9` that is not UTF-8 stays the three characters `%E9`. Each
made the helpdesk act on something other than what was sent: a reply stored with
replacement characters, or "body is required" for a body that was there. Here the
same parser is strict, and a body it cannot read is `UnreadableForm` (400): the
API's error JSON, a page on the portal (`helpdesk.http_errors`).
"""

from __future__ import annotations

import codecs
import typing as t
from urllib.parse import parse_qsl

from flask import Flask
from flask.wrappers import Request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import BadRequest
from werkzeug.formparser import FormDataParser, MultiPartParser

# Werkzeug decodes a multipart text part with `bytes.decode(charset, "replace")`,
# the charset its `get_part_charset` names. These codecs decode as the charset the
# part declares (UTF-8 when none) but ignore the "replace" and fail on a bad byte.
_STRICT = {"utf-8": "helpdesk_strict_utf_8", "ascii": "helpdesk_strict_ascii"}


def _strict_codec(name: str) -> codecs.CodecInfo | None:
    for charset, strict in _STRICT.items():
        if name == strict:
            codec = codecs.lookup(charset)
            return codecs.CodecInfo(
                codec.encode, lambda data, errors="strict", codec=codec: codec.decode(data), name=strict
            )
    return None


codecs.register(_strict_codec)


class UnreadableForm(BadRequest):
    """A form body that is not what it says it is: 400, nothing read from it
    (answered by `helpdesk.http_errors`)."""

    description = "The form data could not be read: it is not well-formed UTF-8 form data."


class _StrictMultiPartParser(MultiPartParser):
    def get_part_charset(self, headers: Headers) -> str:
        charset = super().get_part_charset(headers)
        if charset == "us-ascii":
            charset = "ascii"
        return _STRICT.get(charset, charset)  # ISO-8859-1 reads every byte


class _StrictFormDataParser(FormDataParser):
    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.silent = False  # werkzeug's own parse would answer an empty form

    def parse(
        self,
        stream: t.IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str] | None = None,
    ) -> t.Any:
        try:
            return super().parse(stream, mimetype, content_length, options)
        except ValueError as exc:  # UnicodeDecodeError included
            raise UnreadableForm() from exc

    def _parse_multipart(
        self, stream: t.IO[bytes], mimetype: str, content_length: int | None, options: dict[str, str]
    ) -> t.Any:
        parser = _StrictMultiPartParser(
            stream_factory=self.stream_factory,
            max_form_memory_size=self.max_form_memory_size,
            max_form_parts=self.max_form_parts,
            cls=self.cls,
        )
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        form, files = parser.parse(stream, boundary, content_length)
        return stream, form, files

    def _parse_urlencoded(
        self, stream: t.IO[bytes], mimetype: str, content_length: int | None, options: dict[str, str]
    ) -> t.Any:
        items = parse_qsl(stream.read().decode(), keep_blank_values=True, errors="strict")
        return stream, self.cls(items), self.cls()


class StrictRequest(Request):
    """Flask's request, with forms read by `_StrictFormDataParser`."""

    form_data_parser_class = _StrictFormDataParser


def init_app(app: Flask) -> None:
    app.request_class = StrictRequest
