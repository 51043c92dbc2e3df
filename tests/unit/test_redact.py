from __future__ import annotations

import logging

import pytest
from kombu.utils.url import maybe_sanitize_url
from sqlalchemy.engine import make_url

from drayman.redact import MaskingFilter, mask_text, mask_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://etl:s3cret@db:5432/drayman",
            "postgresql+psycopg://etl:***@db:5432/drayman",
        ),
        (
            "mysql+pymysql://root:pw@127.0.0.1/x?charset=utf8mb4",
            "mysql+pymysql://root:***@127.0.0.1/x?charset=utf8mb4",
        ),
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("amqp://guest:guest@127.0.0.1:5672//", "amqp://guest:***@127.0.0.1:5672//"),
        # an unescaped @ or : in the password: hidden whole, never in part
        ("postgresql://etl:p@ss:w@rd@db/x", "postgresql://etl:***@db/x"),
        ("sqlite:////srv/drayman/drayman.db", "sqlite:////srv/drayman/drayman.db"),
        ("postgresql://etl@db/x", "postgresql://etl@db/x"),
        ("", ""),
        # a password the driver reads from the query string, whatever the key's case
        ("postgresql://etl@db/x?password=s3cret", "postgresql://etl@db/x?password=***"),
        ("postgresql://db/x?user=u&PassWord=s3cret", "postgresql://db/x?user=u&PassWord=***"),
        (
            "mysql+pymysql://u@h/x?passwd=s3&charset=utf8mb4",
            "mysql+pymysql://u@h/x?passwd=***&charset=utf8mb4",
        ),
        ("redis://h:6379/0?password=s3cret", "redis://h:6379/0?password=***"),
        (
            "postgresql://h/x?sslpassword=a&pwd=b&pass=c",
            "postgresql://h/x?sslpassword=***&pwd=***&pass=***",
        ),
        ("http://h/x?token=t&secret=s&page=2", "http://h/x?token=***&secret=***&page=2"),
        # a password with a space, a tab, a quote, < or >: still hidden whole
        ("postgresql://etl:pa ss@db/x", "postgresql://etl:***@db/x"),
        ("postgresql://etl:pa\tss@db/x", "postgresql://etl:***@db/x"),
        ("postgresql://etl:pa'ss@db/x", "postgresql://etl:***@db/x"),
        ('postgresql://etl:pa"ss@db/x', "postgresql://etl:***@db/x"),
        ("postgresql://etl:pa<s>s@db/x", "postgresql://etl:***@db/x"),
        ("postgresql://etl:p/a@ss@db/x", "postgresql://etl:***@db/x"),
        # a scheme glued to a word or a digit is still a URL
        ("x_postgresql://etl:s3cret@db/x", "x_postgresql://etl:***@db/x"),
        ("redis://:a@h1;redis://:b@h2", "redis://:***@h1;redis://:***@h2"),
    ],
)
def test_mask_url_hides_the_password_only(url: str, shown: str) -> None:
    assert mask_url(url) == shown


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://etl:s3cret@db:5432/drayman", "mysql+pymysql://root:pw@h:3306/x"],
)
def test_mask_url_agrees_with_sqlalchemy_on_the_parts_it_keeps(url: str) -> None:
    assert mask_url(url) == make_url(url).render_as_string(hide_password=True)


def test_mask_url_agrees_with_kombu_on_what_it_hides() -> None:
    url = "amqp://guest:s3cret@127.0.0.1:5672//"
    assert "s3cret" not in maybe_sanitize_url(url)
    assert mask_url(url).replace("***", "**") == maybe_sanitize_url(url)


def test_mask_text_finds_every_url_in_a_message() -> None:
    text = (
        "cannot reach 'redis://:one@r:6379/0' nor (amqp://u:two@q//); "
        'see "postgresql://x:three@db/d" and mail admin@example.com'
    )
    masked = mask_text(text)
    for secret in ("one", "two", "three"):
        assert f":{secret}@" not in masked
    assert "admin@example.com" in masked
    assert "redis://:***@r:6379/0" in masked


def test_mask_text_stops_at_the_url_it_masks() -> None:
    """A password may hold a space, so the mask must still end at the URL's own `@`."""
    text = "database 'postgresql://u:pw@db:5432/x?password=q' is empty; ask admin@example.com"
    assert mask_text(text) == (
        "database 'postgresql://u:***@db:5432/x?password=***' is empty; ask admin@example.com"
    )
    text = "cannot reach postgresql://db:5432/x (refused); ask admin@example.com"
    assert mask_text(text) == text


def test_masking_filter_masks_arguments_and_tracebacks() -> None:
    record = logging.LogRecord(
        "drayman.x", logging.ERROR, __file__, 1, "broker.down url=%s", ("redis://:pw1@h/0",), None
    )
    try:
        raise ValueError("at redis://:pw2@h/0")
    except ValueError as exc:
        record.exc_info = (type(exc), exc, exc.__traceback__)

    assert MaskingFilter().filter(record) is True
    line = logging.Formatter().format(record)
    assert "pw1" not in line
    assert "pw2" not in line
    assert "redis://:***@h/0" in line


def test_masking_filter_takes_another_mask() -> None:
    """The seam for masking stored secret values too (issue 15)."""
    record = logging.LogRecord("drayman.x", logging.INFO, __file__, 1, "token=%s", ("abc",), None)
    MaskingFilter(lambda text: text.replace("abc", "***")).filter(record)
    assert record.getMessage() == "token=***"


@pytest.mark.parametrize(
    "text",
    ["a://b:" * 120000, "a1" * 60000 + "://", "a://b:" + "c" * 120000 + "@", "&x" * 60000 + "://"],
    ids=["many heads", "one long scheme", "one long password", "many query keys"],
)
def test_mask_text_is_linear_on_hostile_text(text: str) -> None:
    """An error message or log line may quote user input: masking it must not hang. (No
    timing assertion: a quadratic scan of these takes minutes, and pytest-timeout's 300 s is the
    judge.)"""
    assert mask_text(text) == text
