"""A password never reaches the user's screen: quoted, percent-encoded, malformed, or rejected by the server.

Each case's input really contains the password, and every fragment of it is looked for in the output,
so the assertion fails if masking stops at a space, a quote or an escape.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import conninfo

from pgshift.db.connect import connect, describe_target, mask_password, require_url
from pgshift.errors import PgshiftError
from tests.conftest import PgServer
from tests.helpers import run_pgshift

SECRET_WORDS = ("p@ss", "w0rd", "zzs3cr")

TEXTS = [
    "host=db password='p@ss w0rd' dbname=app",
    "host=db password = 'p@ss w0rd' dbname=app",
    "host=db password='p@ss w0rd\\' zzs3cr' dbname=app",  # an escaped quote inside the value
    "host=db PASSWORD='p@ss w0rd' dbname=app",
    'host=db password="p@ss w0rd" dbname=app',
    "host=db password='p@ss w0rd dbname=app",  # unterminated quote: mask to the end
    "postgresql://app:p%40ss%20w0rd@db:5432/app",
    "postgres://app@db/app?sslmode=require&password=p%40ss%20w0rd",
    "connection to postgresql://app:p@zzs3cr@db/app failed",  # an unencoded @ in the password
]


def _leaks(text: str) -> list[str]:
    return [w for w in SECRET_WORDS if w in text] + (["p%40ss"] if "p%40ss" in text else [])


@pytest.mark.parametrize("text", TEXTS)
def test_no_fragment_of_a_password_survives_masking(text: str) -> None:
    assert _leaks(text)  # the input really holds the password
    masked = mask_password(text)
    assert not _leaks(masked), masked
    assert "***" in masked
    assert masked.startswith(("host=db", "postgres", "connection")) and "db" in masked  # the rest is kept


@pytest.mark.parametrize(
    "url",
    [
        'host=db password="p@ss w0rd" dbname=app',  # libpq quotes with ' only: "w0rd"" is a syntax error
        "host=db password='p@ss w0rd dbname=app",
        "postgresql://app:p%zzs3cr@db/app",  # libpq echoes the bad percent-encoded token
    ],
)
def test_an_invalid_connection_string_error_does_not_quote_the_password(url: str) -> None:
    with pytest.raises(PgshiftError) as info:
        require_url(url)
    assert not _leaks(str(info.value)), str(info.value)
    assert "not a valid connection string" in str(info.value)


def _wrong_password_url(pg_server: PgServer, db_name: str, password: str, *, kv: bool) -> str:
    """TCP with password authentication on the embedded cluster; the external server's own otherwise."""
    if pg_server.cluster is not None and not kv:
        return pg_server.tcp_url_for(db_name, password=password)  # postgresql://user:p%40ss%20...@host
    base = pg_server.tcp_url_for(db_name) if pg_server.cluster is not None else pg_server.url_for(db_name)
    params = conninfo.conninfo_to_dict(base)
    parts = [f"{k}={v}" for k, v in params.items() if k != "password"]
    return " ".join([*parts, f"password='{password}'"])


@pytest.mark.parametrize("kv", [True, False], ids=["key-value", "url"])
def test_a_rejected_login_names_neither_the_password_nor_its_parts(
    pg_server: PgServer, db_name: str, tmp_path: Path, kv: bool
) -> None:
    url = _wrong_password_url(pg_server, db_name, "p@ss w0rd zzs3cr", kv=kv)
    with pytest.raises(PgshiftError) as info:
        connect(url).close()
    message = f"{info.value} {info.value.hint or ''}"
    assert not _leaks(message), message
    if pg_server.cluster is not None:
        assert info.value.exit_code == 5, message  # authentication, so the message went through that path
    result = run_pgshift(["status", "--dir", str(tmp_path)], cwd=tmp_path, url=url)
    assert result.returncode != 0
    assert not _leaks(result.stdout + result.stderr), result.stderr


@pytest.mark.parametrize(
    "url",
    ['host=db password="p@ss w0rd" dbname=app', "postgresql://app:p%zzs3cr@db/app"],
)
def test_the_cli_never_prints_a_malformed_connection_strings_password(tmp_path: Path, url: str) -> None:
    result = run_pgshift(["status", "--dir", str(tmp_path)], cwd=tmp_path, url=url)
    assert result.returncode == 3, result.stderr
    assert not _leaks(result.stdout + result.stderr), result.stderr


def test_libpqs_quoted_tokens_are_masked_whole_and_short_words_are_left_alone() -> None:
    def message(url: str) -> str:
        with pytest.raises(PgshiftError) as info:
            require_url(url)
        return str(info.value)

    # libpq quotes the token after the space: a 3-character piece is still a piece of the password.
    assert 'after "***""' in message('host=db password="p@ss w0r" dbname=app')
    # A piece that contains a shorter one is masked first, so no letter of it is left over.
    assert 'after "***""' in message('host=db password="xyz xyzw" dbname=app')
    # Pieces under 3 characters are not hunted for: they would garble the message, not hide anything.
    assert "connection info string" in message('host=db password="p@ss in" dbname=app')


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("host=db port=5433 dbname=app user=u password=p@ss", "database app on db:5433"),
        ("host=db user=u password=p@ss", "database u on db"),
        ("port=5433 password=p@ss", "database (default) on local socket:5433"),
        ("host=db password='p@ss w0rd", "host=db password=***"),  # not parseable: masked, not raised
    ],
)
def test_describe_target_names_the_database_and_never_the_password(url: str, expected: str) -> None:
    assert describe_target(url) == expected
