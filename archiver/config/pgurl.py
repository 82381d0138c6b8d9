"""`[state] url`: a PostgreSQL URL as libpq reads it, checked, and shown without its password.

The URL goes to libpq as it is (so its query options, `sslmode=verify-full` and the like, and
libpq's own environment, PGPASSFILE, ~/.pgpass, PGSSLMODE, apply); a password comes from the URL,
else from `password_file`, else from libpq's password file. Whatever prints the URL prints
`shown(url)`: the password never reaches a log line, an error or `status`.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")


def is_pg_url(value: str) -> bool:
    """A postgresql:// or postgres:// URL naming a database (host may be empty: a local
    socket), without spaces or control characters."""
    if any(c.isspace() or ord(c) < 32 for c in value):
        return False
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in SCHEMES and parts.path.strip("/") != ""


def shown(url: str) -> str:
    """The URL as it may be printed: the password replaced by "***", nothing else changed."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<invalid PostgreSQL URL>"
    if password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def password_of(url: str) -> str:
    """The password the URL carries ("" when none), for the log's redaction."""
    try:
        return unquote(urlsplit(url).password or "")
    except ValueError:
        return ""
