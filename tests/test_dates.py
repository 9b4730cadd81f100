"""Every date form the newsroom sends; times without an offset are Beijing time, never UTC."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from feeds.dates import DateError, parse_date, rfc822, rfc3339

BEIJING = ZoneInfo("Asia/Shanghai")
SEED_UTC = datetime(2024, 4, 4, 8, 49, 39, tzinfo=timezone.utc)


@pytest.mark.parametrize("value, expected_utc", [
    ("2024-04-04 16:49:39", SEED_UTC),
    ("2024/04/04 16:49:39", SEED_UTC),
    ("2024/04/04 16:49", SEED_UTC.replace(second=0)),
    ("2024年4月4日 16:49", SEED_UTC.replace(second=0)),
    ("2024年04月04日16:49:39", SEED_UTC),
    ("2024年4月4日 16时49分39秒", SEED_UTC),
    ("2024年4月4日", datetime(2024, 4, 3, 16, tzinfo=timezone.utc)),
    ("2024-04-04T16:49:39+08:00", SEED_UTC),
    ("2024-04-04T08:49:39Z", SEED_UTC),
    ("2024-04-04T16:49:39", SEED_UTC),
    ("Thu, 04 Apr 2024 16:49:39 +0800", SEED_UTC),
    ("Thu, 04 Apr 2024 08:49:39 GMT", SEED_UTC),
    ("04 Apr 2024 08:49:39 -0000", SEED_UTC),
    (1712220579, SEED_UTC),
    (1712220579.0, SEED_UTC),
    ("1712220579", SEED_UTC),
    ("April 4, 2024 4:49:39 PM", SEED_UTC),
])
def test_accepted_forms(value, expected_utc):
    parsed = parse_date(value, BEIJING)
    assert parsed.tzinfo is not None
    assert parsed == expected_utc


def test_site_timezone_is_a_setting():
    assert parse_date("2024-04-04 16:49:39", ZoneInfo("Europe/Berlin")) == datetime(2024, 4, 4, 14, 49, 39, tzinfo=timezone.utc)


@pytest.mark.parametrize("value, message", [
    ("not a date", 'cannot read "not a date"'),
    ("", "is empty"),
    ("16:49", 'cannot read "16:49"'),
    ("4", 'cannot read "4"'),
    ("2024-13-01", 'cannot read "2024-13-01"'),
    ("2024年2月30日", 'cannot read "2024年2月30日"'),
    ("0001-01-01", "outside the years"),
    (None, "cannot read None"),
    (True, "cannot read True"),
    ([2024], "cannot read [2024]"),
    (10**20, "as Unix seconds"),
])
def test_rejected_forms_say_why(value, message):
    with pytest.raises(DateError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_date(value, BEIJING)


def test_formats():
    moment = datetime(2024, 4, 4, 16, 49, 39, tzinfo=BEIJING)
    assert rfc822(moment) == "Thu, 04 Apr 2024 16:49:39 +0800"
    assert rfc3339(moment) == "2024-04-04T16:49:39+08:00"
