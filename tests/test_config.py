"""Settings: embedded defaults, `RCMS_*` environment variables and refusals that keep it safe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from realtime_cms.config import DEFAULT_DATABASE_URL, DEFAULT_SECRET, Settings

SECRET = "s" * 32
MYSQL_URL = "mysql+aiomysql://rcms:pw@db.internal:3306/rcms"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No inherited RCMS_* variables, and an empty working directory so no `.env` is read."""
    for name in list(os.environ):
        if name.upper().startswith("RCMS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_the_embedded_single_machine_mode() -> None:
    settings = Settings()
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.is_sqlite and settings.sqlite_path == Path("realtime_cms.sqlite3")
    assert settings.redis_url is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.is_embedded is True


def test_the_default_secret_is_accepted_in_embedded_mode() -> None:
    assert Settings().secret_key == DEFAULT_SECRET


def test_rcms_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RCMS_DATABASE_URL", MYSQL_URL)
    monkeypatch.setenv("RCMS_REDIS_URL", "redis://cache.internal:6379/2")
    monkeypatch.setenv("RCMS_SECRET_KEY", SECRET)
    monkeypatch.setenv("RCMS_HOST", "0.0.0.0")
    monkeypatch.setenv("RCMS_PORT", "9090")
    monkeypatch.setenv("RCMS_COOKIE_SECURE", "true")
    settings = Settings()
    assert settings.database_url == MYSQL_URL
    assert settings.redis_url == "redis://cache.internal:6379/2"
    assert settings.secret_key == SECRET
    assert (settings.host, settings.port, settings.cookie_secure) == ("0.0.0.0", 9090, True)
    assert settings.is_embedded is False and settings.is_sqlite is False


def test_a_dotenv_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RCMS_PORT=9191\nRCMS_LOG_LEVEL=DEBUG\n")
    settings = Settings()
    assert (settings.port, settings.log_level) == (9191, "DEBUG")


def test_environment_variables_win_over_the_dotenv_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("RCMS_PORT=9191\n")
    monkeypatch.setenv("RCMS_PORT", "9292")
    assert Settings().port == 9292


def test_variables_without_the_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9393")
    monkeypatch.setenv("DATABASE_URL", MYSQL_URL)
    settings = Settings()
    assert (settings.port, settings.database_url) == (8080, DEFAULT_DATABASE_URL)


def test_an_out_of_range_port_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RCMS_PORT", "70000")
    with pytest.raises(ValueError, match="port"):
        Settings()


def test_the_default_secret_with_a_mysql_database_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RCMS_DATABASE_URL", MYSQL_URL)
    with pytest.raises(ValueError, match="RCMS_SECRET_KEY must be set"):
        Settings()


def test_the_default_secret_with_redis_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RCMS_REDIS_URL", "redis://127.0.0.1:6379/0")
    with pytest.raises(ValueError, match="RCMS_SECRET_KEY must be set"):
        Settings()


def test_a_secret_shorter_than_32_characters_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        Settings(secret_key="s" * 31)


def test_a_32_character_secret_is_accepted_outside_embedded_mode() -> None:
    settings = Settings(database_url=MYSQL_URL, redis_url="redis://r:6379/0", secret_key=SECRET)
    assert settings.secret_key == SECRET and not settings.is_embedded


def test_comma_separated_allowed_origins_are_split_trimmed_and_lose_a_trailing_slash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "RCMS_ALLOWED_ORIGINS", " https://cms.example.com/ ,https://admin.example.com,, "
    )
    assert Settings().allowed_origins == ["https://cms.example.com", "https://admin.example.com"]


def test_comma_separated_trusted_proxies_are_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RCMS_TRUSTED_PROXIES", "10.0.0.1, 10.0.0.2")
    assert Settings().trusted_proxies == ["10.0.0.1", "10.0.0.2"]


@pytest.mark.parametrize("value", ["*", "https://cms.example.com,*", "", " , "])
def test_wildcard_or_empty_allowed_origins_from_the_environment_are_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("RCMS_ALLOWED_ORIGINS", value)
    with pytest.raises(ValueError, match="allowed_origins"):
        Settings()


@pytest.mark.parametrize("origins", [["*"], [], [""], ["https://ok.example", " * "]])
def test_wildcard_or_empty_allowed_origins_given_directly_are_refused(origins: list[str]) -> None:
    with pytest.raises(ValueError, match="allowed_origins"):
        Settings(allowed_origins=origins)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite+aiosqlite:////var/lib/rcms/db.sqlite3", Path("/var/lib/rcms/db.sqlite3")),
        ("sqlite+aiosqlite:///:memory:", None),
        ("sqlite+aiosqlite://", None),
        (MYSQL_URL, None),
    ],
)
def test_sqlite_path_is_the_file_of_a_file_backed_sqlite_url_only(
    url: str, path: Path | None
) -> None:
    assert Settings(database_url=url, secret_key=SECRET).sqlite_path == path
