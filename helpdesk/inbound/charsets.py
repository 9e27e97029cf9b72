"""Bytes → text for mail, the way real senders mean it (docs/mail-gateway.md).

Labels are read as the WHATWG Encoding Standard maps them: real mail declares the
small charset and uses its superset (`gb2312` → gb18030, `iso-8859-1`/`us-ascii`
→ windows-1252, `ks_c_5601-1987` → windows-949, `shift_jis` → windows-31J, ...).
Three deliberate departures, because mail is not a browser:

- the WHATWG "replacement" labels (`iso-2022-kr`, `hz-gb-2312`) are decoded with
  their real codecs when Python has one: that guard protects HTML parsers from
  script injection, while here the text is only stored and later sanitized;
- text declared in a legacy charset that is valid UTF-8 is read as UTF-8
  (mislabelled UTF-8 is common, and legacy text is almost never valid UTF-8);
- unknown or broken labels, and 8-bit text without a label, that is neither
  UTF-8 nor ordinary Western text in windows-1252 (`_plausibly_windows_1252`) go to
  detection (charset-normalizer, limited to the WHATWG encodings and, among near
  ties, to the charset mail uses most). U+FFFD appears only for bytes no plausible
  charset decodes: a long text that its codec reads but for a stray byte keeps that codec.

Decoded text never carries NUL or lone surrogates: PostgreSQL refuses both.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from charset_normalizer import from_bytes

log = logging.getLogger(__name__)

# Python's ISO-2022-JP codecs lack the NEC row 13 (①, ㈱) that WHATWG's jis0208
# index and real Japanese mail have; this pseudo-codec reads it through EUC-JIS-2004.
_JIS_VIA_EUC = "iso-2022-jp-via-euc"
_JIS_ESCAPE = re.compile(rb"(\x1b(?:\(B|\(J|\(I|\$@|\$B))")

# WHATWG Encoding Standard, "Encodings" table: Python codecs (tried in order, the
# first is the canonical one) and every label of that encoding.
_WHATWG: tuple[tuple[tuple[str, ...], str], ...] = (
    (("utf-8",), "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8"),
    (("cp866",), "866 cp866 csibm866 ibm866"),
    (
        ("iso8859-2",),
        "csisolatin2 iso-8859-2 iso-ir-101 iso8859-2 iso88592 iso_8859-2 iso_8859-2:1987 l2 latin2",
    ),
    (
        ("iso8859-3",),
        "csisolatin3 iso-8859-3 iso-ir-109 iso8859-3 iso88593 iso_8859-3 iso_8859-3:1988 l3 latin3",
    ),
    (
        ("iso8859-4",),
        "csisolatin4 iso-8859-4 iso-ir-110 iso8859-4 iso88594 iso_8859-4 iso_8859-4:1988 l4 latin4",
    ),
    (
        ("iso8859-5",),
        "csisolatincyrillic cyrillic iso-8859-5 iso-ir-144 iso8859-5 iso88595 iso_8859-5 iso_8859-5:1988",
    ),
    (
        ("iso8859-6",),
        "arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 "
        "iso-8859-6 iso-8859-6-e iso-8859-6-i iso-ir-127 iso8859-6 iso88596 "
        "iso_8859-6 iso_8859-6:1987",
    ),
    (
        ("iso8859-7",),
        "csisolatingreek ecma-118 elot_928 greek greek8 iso-8859-7 iso-ir-126 "
        "iso8859-7 iso88597 iso_8859-7 iso_8859-7:1987 sun_eu_greek",
    ),
    (
        ("iso8859-8",),
        "csiso88598e csisolatinhebrew hebrew iso-8859-8 iso-8859-8-e iso-ir-138 "
        "iso8859-8 iso88598 iso_8859-8 iso_8859-8:1988 visual "
        "csiso88598i iso-8859-8-i logical",
    ),
    (("iso8859-10",), "csisolatin6 iso-8859-10 iso-ir-157 iso8859-10 iso885910 l6 latin6"),
    (("iso8859-13",), "iso-8859-13 iso8859-13 iso885913"),
    (("iso8859-14",), "iso-8859-14 iso8859-14 iso885914"),
    (("iso8859-15",), "csisolatin9 iso-8859-15 iso8859-15 iso885915 iso_8859-15 l9"),
    (("iso8859-16",), "iso-8859-16"),
    (("koi8-r",), "cskoi8r koi koi8 koi8-r koi8_r"),
    (("koi8-u",), "koi8-ru koi8-u"),
    (("mac-roman",), "csmacintosh mac macintosh x-mac-roman"),
    (("cp874",), "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874"),
    (("cp1250",), "cp1250 windows-1250 x-cp1250"),
    (("cp1251",), "cp1251 windows-1251 x-cp1251"),
    (
        ("cp1252",),
        "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100 "
        "iso8859-1 iso88591 iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii "
        "windows-1252 x-cp1252",
    ),
    (("cp1253",), "cp1253 windows-1253 x-cp1253"),
    (
        ("cp1254",),
        "cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 "
        "iso_8859-9:1989 l5 latin5 windows-1254 x-cp1254",
    ),
    (("cp1255",), "cp1255 windows-1255 x-cp1255"),
    (("cp1256",), "cp1256 windows-1256 x-cp1256"),
    (("cp1257",), "cp1257 windows-1257 x-cp1257"),
    (("cp1258",), "cp1258 windows-1258 x-cp1258"),
    (("mac-cyrillic",), "x-mac-cyrillic x-mac-ukrainian"),
    (("gb18030",), "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk gb18030"),
    (("big5hkscs",), "big5 big5-hkscs cn-big5 csbig5 x-x-big5"),
    # WHATWG EUC-JP and ISO-2022-JP include the NEC/IBM rows; Python splits them.
    (("euc-jp", "euc-jis-2004"), "cseucpkdfmtjapanese euc-jp x-euc-jp"),
    (("iso2022-jp", "iso2022-jp-2", "iso2022-jp-ext", _JIS_VIA_EUC), "csiso2022jp iso-2022-jp"),
    (("cp932",), "csshiftjis ms932 ms_kanji shift-jis shift_jis sjis windows-31j x-sjis"),
    (
        ("cp949",),
        "cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 "
        "ks_c_5601-1989 ksc5601 ksc_5601 windows-949",
    ),
    # "replacement" in WHATWG; see the module docstring.
    (("iso2022-kr",), "csiso2022kr iso-2022-kr"),
    (("hz",), "hz-gb-2312"),
    (("utf-16-be",), "unicodefffe utf-16be"),
    (("utf-16-le",), "csunicode iso-10646-ucs-2 ucs-2 unicode unicodefeff utf-16le"),
    # WHATWG reads bare "utf-16" as little-endian; Python's codec also honours a BOM.
    (("utf-16",), "utf-16"),
)

# Labels seen in mail that WHATWG does not list but that name one of its encodings
# (Python-style spellings, and what charset-normalizer reports).
_ALIASES = {
    "latin-1": "latin1",
    "iso-8859-1:1987": "latin1",
    "cp936": "gbk",
    "ms936": "gbk",
    "euc-cn": "gb2312",
    "x-euc-cn": "gb2312",
    "gb2312-80": "gb2312",
    "uhc": "windows-949",
    "ms949": "windows-949",
    "x-windows-949": "windows-949",
    "euc-kr-2": "euc-kr",
    "shift-jisx0213": "shift_jis",
    "x-mac-roman": "macintosh",
    "mac-roman": "macintosh",
    "windows-31j": "shift_jis",
    "cp-1252": "windows-1252",
    "iso8859-8-i": "iso-8859-8-i",
    # charset-normalizer's names for the JIS X 0213 supersets it detects
    "shift-jis-2004": "shift_jis",
    "euc-jis-2004": "euc-jp",
}

_LABELS: dict[str, tuple[str, ...]] = {
    label: codec_names for codec_names, labels in _WHATWG for label in labels.split()
}

# What detection may answer: the WHATWG encodings, which is what mail is written in.
_MAIL_CODECS = frozenset(codec_names[0] for codec_names, _ in _WHATWG) - {
    "utf-16",
    "utf-16-be",
    "utf-16-le",
    "mac-roman",
    "mac-cyrillic",
}
_ISO_2022 = (*_LABELS["iso-2022-jp"], "iso2022-kr")
_UNICODE_CODECS = frozenset({"utf-8", "utf-16", "utf-16-be", "utf-16-le"})
_SINGLE_BYTE = frozenset(
    {
        "cp866",
        "koi8-r",
        "koi8-u",
        "mac-roman",
        "mac-cyrillic",
        "cp874",
        *(f"iso8859-{n}" for n in (2, 3, 4, 5, 6, 7, 8, 10, 13, 14, 15, 16)),
        *(f"cp125{n}" for n in range(9)),
    }
)
# Python codecs that are not a text encoding a sender could mean.
_NOT_TEXT = frozenset(
    {"idna", "punycode", "undefined", "unicode_escape", "raw_unicode_escape", "mbcs", "oem", "charmap"}
)
# When detection finds several equally good readings, the one real mail most often
# uses wins (windows-1252 before its Central European cousin, and so on).
_DETECTION_PREFERENCE = (
    "cp1252",
    "gb18030",
    "cp1251",
    "cp932",
    "cp949",
    "big5hkscs",
    "cp1250",
    "koi8-r",
    "iso8859-15",
    "cp1253",
    "cp1254",
    "cp1255",
    "cp1256",
    "cp1257",
    "euc-jp",
    "cp874",
    "cp1258",
    "iso8859-2",
    "koi8-u",
    "cp866",
)
# Valid UTF-8 beats a multi-byte legacy label that also reads the bytes only with
# this many non-ASCII characters (two CJK characters can be valid UTF-8 by chance).
_UTF8_EVIDENCE = 4
_DETECTION_SAMPLE = 64 * 1024
_CHAOS_TIE = 0.05
_COHERENCE_TIE = 0.05
# A multi-byte text (UTF-8, CJK) that a codec reads except for this share of its
# 8-bit bytes is that codec's: a stray byte should not send it to detection.
_TOLERATED_ERROR_RATIO = 0.02

# What is left of the detection calls allowed where `detection_budget` was entered
# (None: no budget).
_detections_left: ContextVar[int | None] = ContextVar("detections_left", default=None)

_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_SURROGATE = re.compile("[\ud800-\udfff]")
_ASCII = bytes(range(0x80))
# Undeclared 8-bit text is read as windows-1252 without detection unless one of these
# says it is not Western text (`_plausibly_windows_1252`): a byte windows-1252 leaves
# undefined; three 8-bit letters in a row (Western languages put one or two accented
# letters between plain ones; Cyrillic, Greek, Hebrew and CJK text in their 8-bit
# charsets reads as runs of them); or a sign that is no letter between two letters
# ('Za\xbf\xf3\xb3\xe6' is Polish "Zażółć" in ISO-8859-2), apostrophes, the middle
# dot, dashes and the soft hyphen excepted. Each byte is translated to its class
# (a: ASCII letter, L: 8-bit letter, S: 8-bit sign, U: undefined, -: anything else)
# and the classes are searched for these sequences, in C: a regular expression
# took 40 ms a megabyte.
_CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")
_CP1252_NEUTRAL = frozenset(b"\x91\x92\x96\x97\xad\xb4\xb7")  # quotes, dashes, ´, ·


def _cp1252_class(byte: int) -> int:
    if byte < 0x80:
        return ord("a") if chr(byte).isalpha() else ord("-")
    if byte in _CP1252_UNDEFINED:
        return ord("U")
    if byte in _CP1252_NEUTRAL:
        return ord("-")
    return ord("L") if bytes([byte]).decode("cp1252").isalpha() else ord("S")


_CP1252_CLASSES = bytes(_cp1252_class(byte) for byte in range(256))
_NOT_WINDOWS_1252 = (b"U", b"LLL", b"aSa", b"aSL", b"LSa", b"LSL")


def _c1_passthrough(exc: UnicodeError) -> tuple[str, int]:
    """WHATWG single-byte decoders map 0x80-0x9F holes (0x81 in windows-1252) to C1."""
    if isinstance(exc, UnicodeDecodeError):
        byte = exc.object[exc.start]
        if 0x80 <= byte <= 0x9F:
            return chr(byte), exc.start + 1
    raise exc


codecs.register_error("mailgateway-c1", _c1_passthrough)


def lookup(label: str | None) -> tuple[str, ...] | None:
    """Python codecs for a charset label, WHATWG first; None when unknown or unusable."""
    if not label:
        return None
    name = label.strip().strip("\"'").split("*", 1)[0].strip().lower()
    for candidate in (name, name.replace("_", "-")):
        found = _LABELS.get(_ALIASES.get(candidate, candidate))
        if found:
            return found
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_TEXT:
        return None
    # A Python-only name may still be a WHATWG encoding under another label.
    return _LABELS.get(info.name.replace("_", "-"), (info.name,))


@contextmanager
def detection_budget(calls: int) -> Iterator[None]:
    """At most `calls` texts go to detection within the block (one mail), each some
    0.3 to 6 ms; the texts after them are read as with `detect=False` (docs/security.md)."""
    token = _detections_left.set(calls)
    try:
        yield
    finally:
        _detections_left.reset(token)


def _may_detect(detect: bool) -> bool:
    """Whether this text may go to detection, counting it against the budget."""
    left = _detections_left.get()
    if not detect or left is None:
        return detect
    if left <= 0:
        return False
    _detections_left.set(left - 1)
    return True


def decode(data: bytes, label: str | None = None, *, hint: str | None = None, detect: bool = True) -> str:
    """Text from bytes declared as `label` (None: undeclared); never raises.

    `hint` is a charset to try for undeclared 8-bit text before detection, e.g. the
    body's charset for raw 8-bit header bytes from the same mail client.
    `detect=False` is for short texts such as RFC 2047 encoded words: detection
    costs some 0.3 ms however short the text, and guesses poorly on a few bytes
    (docs/security.md). What it would have read is read with the declared charset,
    replacing what that cannot read, or as windows-1252 when none is declared.
    """
    if not data:
        return ""
    return _clean(_decode(bytes(data), label, hint, detect))


def _decode(data: bytes, label: str | None, hint: str | None, detect: bool) -> str:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            text = _try(data[len(bom) :], (codec,))
            if text is not None:
                return text
    declared = lookup(label)
    if data.isascii():
        if declared and _needs_codec_for_ascii(declared[0]):
            text = _try(data, declared)
            return text if text is not None else data.decode(declared[0], "replace")
        if declared is None and b"\x1b" in data:  # unlabelled ISO-2022-JP/KR escapes
            text = _try(data, _ISO_2022)
            if text is not None:
                return text
        return data.decode("ascii")
    if declared is None:
        return _undeclared(data, hint, detect)
    primary = declared[0]
    text = _try(data, declared)
    if primary not in _UNICODE_CODECS:
        as_utf8 = _try(data, ("utf-8",))
        if as_utf8 is not None and (
            text is None or primary in _SINGLE_BYTE or _non_ascii_count(as_utf8) >= _UTF8_EVIDENCE
        ):
            return as_utf8
    if text is not None:
        return text
    if primary not in _SINGLE_BYTE:
        text = _mostly(data, primary)
        if text is not None:
            return text
    return (_detect_text(data) if _may_detect(detect) else None) or data.decode(primary, "replace")


def _undeclared(data: bytes, hint: str | None, detect: bool) -> str:
    text = _try(data, ("utf-8",))
    if text is not None:
        return text
    hinted = lookup(hint)
    if hinted and hinted[0] not in _UNICODE_CODECS:
        text = _try(data, hinted)
        if text is not None:
            return text
    text = _mostly(data, "utf-8")
    if text is None and _plausibly_windows_1252(data):
        text = _windows_1252(data)
    if text is None:
        text = _detect_text(data) if _may_detect(detect) else _windows_1252(data)
    return text or data.decode("utf-8", "replace")


def _plausibly_windows_1252(data: bytes) -> bool:
    """Whether undeclared 8-bit text reads as ordinary Western text in windows-1252.

    RFC 2045 §5.2 makes a text part without a charset us-ascii, and 8-bit bytes in
    it are, in practice, windows-1252 from a web form or script: detection, which
    guesses from letter statistics, read a short "Gracias, José" as "Josй" and
    "¿Pueden revisarlo?" as "żPueden". Text this rejects (`_NOT_WINDOWS_1252`) still
    goes to detection; docs/mail-gateway.md, step 1 of the pipeline."""
    classes = data.translate(_CP1252_CLASSES)
    return not any(sequence in classes for sequence in _NOT_WINDOWS_1252)


def _windows_1252(data: bytes) -> str | None:
    """Undeclared 8-bit text read without detection: the charset detection most
    often answers for mail, and one that reads every byte."""
    return _try(data, _LABELS["windows-1252"])


def _needs_codec_for_ascii(codec: str) -> bool:
    """ISO-2022, HZ and UTF-7 are 7-bit encodings; UTF-16 text can be all ASCII bytes."""
    return codec.startswith(("iso2022", "hz", "utf-16", "utf-7"))


def _try(data: bytes, codec_names: tuple[str, ...]) -> str | None:
    """The first strict reading among the codecs, None when none reads the bytes."""
    for name in codec_names:
        if name == _JIS_VIA_EUC:
            text = _try(_iso2022jp_as_eucjp(data), ("euc-jis-2004",))
            if text is not None:
                return text
            continue
        errors = "mailgateway-c1" if name in _SINGLE_BYTE else "strict"
        try:
            return data.decode(name, errors)
        except (UnicodeError, LookupError):
            continue
    return None


def _iso2022jp_as_eucjp(data: bytes) -> bytes:
    """ISO-2022-JP re-coded as EUC-JP: JIS X 0208 pairs get the high bit, kana SS2."""
    out = bytearray()
    mode = b"(B"
    for piece in _JIS_ESCAPE.split(data):
        if piece.startswith(b"\x1b"):
            mode = piece[1:]
        elif mode in (b"(B", b"(J"):
            out += piece
        elif mode == b"(I":
            for byte in piece:
                out += bytes((0x8E, byte | 0x80)) if 0x21 <= byte <= 0x5F else bytes((byte,))
        else:
            out += bytes(byte | 0x80 if 0x21 <= byte <= 0x7E else byte for byte in piece)
    return bytes(out)


def _mostly(data: bytes, codec: str) -> str | None:
    """The codec's reading when only a stray byte or two fail (truncated, corrupted)."""
    try:
        text = data.decode(codec, "replace")
    except LookupError:
        return None
    eight_bit = len(data.translate(None, _ASCII))
    return text if text.count("\ufffd") <= eight_bit * _TOLERATED_ERROR_RATIO else None


def _non_ascii_count(text: str) -> int:
    return sum(1 for char in text if ord(char) > 0x7F)


def _detect_text(data: bytes) -> str | None:
    """charset-normalizer's reading, preferring common mail charsets among ties."""
    sample = data[:_DETECTION_SAMPLE]
    try:
        matches = list(from_bytes(sample))
    except (ValueError, LookupError, UnicodeError) as exc:
        log.warning("charset detection failed: %s", exc)
        return None
    candidates: list[tuple[float, float, int, tuple[str, ...]]] = []
    for position, match in enumerate(matches):
        codec = lookup(match.encoding)
        if not codec or codec[0] not in _MAIL_CODECS:
            continue  # DOS and Mac code pages, UTF-16 for BOM-less CJK: not mail
        rank = (
            _DETECTION_PREFERENCE.index(codec[0])
            if codec[0] in _DETECTION_PREFERENCE
            else len(_DETECTION_PREFERENCE)
        )
        candidates.append((match.chaos, match.coherence, rank * 1000 + position, codec))
    if not candidates:
        return None
    # Near-equal mess: the reading that looks most like a language wins, then the
    # charset mail uses most (cp1250 and cp1252 read "café" equally well).
    best_chaos = min(chaos for chaos, _, _, _ in candidates)
    calm = [candidate for candidate in candidates if candidate[0] <= best_chaos + _CHAOS_TIE]
    best_coherence = max(coherence for _, coherence, _, _ in calm)
    tied = sorted(
        (order, codec) for _, coherence, order, codec in calm if coherence >= best_coherence - _COHERENCE_TIE
    )
    for _, codec in tied:
        text = _try(data, codec)
        if text is not None:
            return text
    return None


def _clean(text: str) -> str:
    """NUL and lone surrogates (a few codecs produce them) cannot be stored."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    return _SURROGATE.sub("\ufffd", text)
