"""Hiding secrets in what people see: the password of every URL shown, in messages and logs.

One function decides how a URL is shown (`mask_url`), one finds URLs in free text
(`mask_text`: an exception's message, a log line), and `MaskingFilter` applies a mask to every
log record a handler writes. SQLAlchemy (`URL.render_as_string(hide_password=True)`) and kombu
(`maybe_sanitize_url`) do the same for their own URLs; this one also covers free text and
passwords with an unescaped `@` in them, and needs neither library.

Issue 15 (stored secret values masked in every log) plugs in here: a masker that also knows
those values is a `Callable[[str], str]` handed to `MaskingFilter`, which calls it on the whole
formatted line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

MASK = "***"

# scheme://user:PASSWORD@ — the user part may be empty (redis://:PASSWORD@host). The password
# may hold anything a driver accepts unescaped (a space, a tab, a quote, `<`, `>`, `:`, `@`): it
# runs to the `@` after which the host part (up to whitespace, `/`, `?`, `#` or a quote) holds
# no further `@`, so one with an unescaped `@` is hidden whole rather than in part. A password
# with spaces may not hold `/` (else "host:5432/db ... admin@example.com" would look like one);
# one without spaces may.
_HOST_AFTER_AT = r"(?=[^@\s/?#'\"<>]*(?:[\s/?#'\"<>]|$))"
_URL_PASSWORD = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s:/@'\"<>]*:)"
    r"(?P<password>[^\r\n/]{0,1024}?|\S{0,1024}?)@" + _HOST_AFTER_AT
)

# The query-string keys that carry a credential (`?password=`, `&passwd=`, `?sslpassword=`,
# `?access_token=`): libpq, PyMySQL, redis-py and kombu all read a password from the query.
_SECRET_KEY = r"[A-Za-z0-9_.\-]*?(?:password|passwd|pwd|pass|secret|token)"
_SECRET_KEY_NAME = re.compile(_SECRET_KEY + r"\Z", re.IGNORECASE)
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;]" + _SECRET_KEY + r"=)(?P<value>[^&#\s'\"<>]*)", re.IGNORECASE
)


def is_secret_key(name: str) -> bool:
    """Whether a URL query key (`password`, `passwd`, `sslpassword`, `token`, ...) carries a
    credential, case-insensitively: the keys `mask_text` hides and workers never receive."""
    return bool(_SECRET_KEY_NAME.match(name))


def mask_url(url: str) -> str:
    """`url` as it may be shown: its password, if any, replaced by `***`, in the user part and
    in the query string (`?password=***`)."""
    return mask_text(url)


def mask_text(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***`."""
    if "://" not in text:  # the common case for a log line: no regex at all
        return text
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['head']}{MASK}", text)


class MaskingFilter(logging.Filter):
    """Rewrites each record's message through `mask` before a handler formats it.

    Attach it to a handler (a handler's filters see records of every logger below it; a
    logger's own filters would miss those its children propagate). The message is rendered
    once here, with its arguments, so a URL passed as an argument is masked too, and so is
    the text of an attached traceback.
    """

    def __init__(self, mask: Callable[[str], str] = mask_text) -> None:
        super().__init__()
        self.mask = mask

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            # Formatted here, masked, and cached where every formatter looks for it.
            record.exc_text = self.mask(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        return True
