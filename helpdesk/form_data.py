"""Reading a form exactly, or not at all (docs/security.md, "Form data").

Werkzeug reads form bodies leniently: a multipart text part's bytes that are not
in its charset become U+FFFD, a part whose headers are not UTF-8 (its name, a file's
name) or a body broken in any other way leaves the whole form empty without a word,
and a urlencoded `%E9` that is not UTF-8 stays the three characters `%E9`. Each
made the helpdesk act on something other than what was sent: a reply stored with
replacement characters, or "body is required" for a body that was there. Here the
same parser is strict, and a body it cannot read is `UnreadableForm` (400): the
API's error JSON, a page on the portal (`helpdesk.http_errors`).

A URL's query string is form data too, and Werkzeug read it as leniently: `?q=caf%E9`
searched for the four characters `caf%E9` and found nothing, and a raw byte that is
not UTF-8 raised while decoding (a 500). Every request's query string is now read
strictly before its view, and one that cannot be read is `UnreadableQuery` (400,
`invalid_query` on the API). See docs/security.md, "Form data".

A urlencoded body of more fields than `MAX_FORM_PARTS`, the bound Werkzeug keeps
for multipart only, is refused (413) before any field is parsed.
"""

from __future__ import annotations

import codecs
import typing as t
from functools import cached_property
from urllib.parse import parse_qsl

from flask import Flask, request
from flask.wrappers import Request
from werkzeug.datastructures import Headers, MultiDict
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
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


class UnreadableQuery(BadRequest):
    """A query string that is not percent-encoded UTF-8: 400, nothing read from it
    (answered by `helpdesk.http_errors`)."""

    description = "The query string could not be read: it is not percent-encoded UTF-8."


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
        # The fields are counted before any is parsed, with multipart's bound
        # (`MAX_FORM_PARTS`, which Werkzeug applies to multipart only): 1 MiB of
        # `a=&` is 350,000 fields and cost 0.23 s of CPU to parse before the CSRF
        # check or the login's limit could answer.
        body = stream.read()
        if self.max_form_parts is not None and body.count(b"&") >= self.max_form_parts:
            raise RequestEntityTooLarge()
        items = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
        return stream, self.cls(items), self.cls()


class StrictRequest(Request):
    """Flask's request, with forms read by `_StrictFormDataParser` and the query
    string read as strictly."""

    form_data_parser_class = _StrictFormDataParser

    @cached_property
    def args(self) -> MultiDict[str, str]:
        # Werkzeug's own reading but strict: `+` is a space and `%C3%A9` "é" as
        # before; `%E9` or a raw byte that is not UTF-8 is refused, not kept.
        try:
            items = parse_qsl(self.query_string.decode(), keep_blank_values=True, errors="strict")
        except ValueError as exc:  # UnicodeDecodeError
            raise UnreadableQuery() from exc
        return self.parameter_storage_class(items)


def init_app(app: Flask) -> None:
    """The strict request. Call it once every blueprint is registered: the query
    string is read after each blueprint's own hooks, which choose the reader's
    language (the portal's staff member, the tracker's switch), so the 400 page is
    in it; requests outside any blueprint (static files) read it first thing."""
    app.request_class = StrictRequest
    app.before_request(_query_outside_blueprints)
    for name, blueprint in app.blueprints.items():
        if "." not in name:  # a nested blueprint runs its parent's hooks first
            app.before_request_funcs.setdefault(blueprint.name, []).append(_read_query)


def _read_query() -> None:
    """Read the query string now (a refusal is `UnreadableQuery`), so every view,
    whether it reads it or not, refuses one that cannot be read."""
    request.args  # noqa: B018 (read for its refusal; kept for the view)


def _query_outside_blueprints() -> None:
    if not request.blueprints:
        _read_query()
