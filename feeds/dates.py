"""Every date form the newsroom sends, read into an aware datetime.

A time without an offset is in the site's timezone (Asia/Shanghai by default),
never UTC: a Beijing ``16:49`` is ``08:49`` UTC.
"""
from __future__ import annotations

import email.utils
import re
from datetime import datetime, timezone, tzinfo

import dateutil.parser

_UNIX_SECONDS = re.compile(r"\d{9,11}(\.\d+)?")
_CHINESE = re.compile(
    r"(?P<y>\d{4})\s*年\s*(?P<mo>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*[日号]"
    r"(?:\s*(?P<h>\d{1,2})\s*[:：时点]\s*(?P<mi>\d{1,2})\s*分?"
    r"(?:\s*[:：]?\s*(?P<s>\d{1,2})\s*秒?)?)?\s*"
)
_RFC822 = re.compile(r"(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{2,4}\s+\d{1,2}:\d{2}.*")
_DEFAULTS = (datetime(2001, 2, 3), datetime(2002, 3, 4))
_EARLIEST, _LATEST = 1900, 2200


class DateError(ValueError):
    """The value is not a date this service can read."""


def parse_date(value: object, tz: tzinfo) -> datetime:
    """Read ``value`` (a string in any accepted form, or Unix seconds) as an aware datetime."""
    if isinstance(value, bool) or value is None:
        raise DateError(f"cannot read {value!r}")
    if isinstance(value, (int, float)):
        return _from_unix(value)
    if not isinstance(value, str):
        raise DateError(f"cannot read {value!r}")
    text = value.strip()
    if not text:
        raise DateError("is empty")
    if _UNIX_SECONDS.fullmatch(text):
        return _from_unix(float(text))
    parsed = _parse_text(text)
    if parsed is None:
        raise DateError(f'cannot read "{value}"')
    if not _EARLIEST <= parsed.year <= _LATEST:
        raise DateError(f'"{value}" is outside the years {_EARLIEST} to {_LATEST}')
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed


def _parse_text(text: str) -> datetime | None:
    chinese = _CHINESE.fullmatch(text)
    if chinese:
        parts = {k: int(v) for k, v in chinese.groupdict(default="0").items()}
        try:
            return datetime(parts["y"], parts["mo"], parts["d"], parts["h"], parts["mi"], parts["s"])
        except ValueError:
            return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    if _RFC822.fullmatch(text):
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        # RFC 5322's "-0000" is UTC with no local zone known; the email module leaves it naive.
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    # dateutil fills a missing year, month or day from its default; parsing twice
    # with two defaults that share nothing shows whether the text named them all.
    try:
        first, second = (dateutil.parser.parse(text, default=d) for d in _DEFAULTS)
    except (ValueError, OverflowError):
        return None
    if first.date() != second.date():
        return None
    return first


def _from_unix(seconds: float) -> datetime:
    try:
        moment = datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError) as exc:
        raise DateError(f"cannot read {seconds!r} as Unix seconds") from exc
    if not _EARLIEST <= moment.year <= _LATEST:
        raise DateError(f"{seconds!r} is outside the years {_EARLIEST} to {_LATEST}")
    return moment


def rfc822(moment: datetime) -> str:
    """``Thu, 04 Apr 2024 16:49:39 +0800``, whatever the process locale."""
    return email.utils.format_datetime(moment)


def rfc3339(moment: datetime) -> str:
    """``2024-04-04T16:49:39+08:00``."""
    return moment.isoformat(timespec="seconds")
