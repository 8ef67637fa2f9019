"""The `localmodel-router` command line: user errors are one line on stderr and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from localmodel_router.local_table import LocalDiscovery
from localmodel_router.main import build_app, build_parser, main


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--namespace", "a", "--local-table", "t.yaml"], "not allowed with"),
        (["--all-namespaces", "--namespace", "a"], "not allowed with"),
        (["--local-table", "/nonexistent/table.yaml"], "cannot read local table"),
        (["--port", "0", "--local-table", "x"], "--port"),
        (["--first-byte-timeout", "-1"], "must be positive"),
        (["--api-keys-file", "/nonexistent/keys"], "cannot read API keys file"),
        (["--bogus"], "unrecognized arguments"),
        (["--max-connections", "0", "--local-table", "x"], "--max-connections"),
        (["--max-waiting", "-1", "--local-table", "x"], "--max-waiting"),
        (["--header-timeout", "0"], "must be positive"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("localmodel-router: error: ")
    assert fragment in err
    assert "Traceback" not in err


def test_invalid_table_is_reported_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "t.yaml"
    table.write_text("models:\n  - name: a\n    endpoints: ['no-port']\n")
    assert main(["--local-table", str(table)]) == 2
    assert "host:port" in capsys.readouterr().err


def test_local_mode_app_is_built_with_settings(tmp_path: Path) -> None:
    table = tmp_path / "t.json"
    table.write_text('{"models": [{"name": "a", "endpoints": ["127.0.0.1:1"]}]}')
    bounds = ["--max-connections", "50", "--max-waiting", "3", "--header-timeout", "2", "--body-timeout", "4"]
    args = build_parser().parse_args(
        ["--local-table", str(table), "--max-body-bytes", "1234", "--idle-timeout", "7", *bounds]
    )
    app = build_app(args)
    assert isinstance(app.discovery, LocalDiscovery)
    assert app.settings.max_body_bytes == 1234 and app.settings.idle_timeout == 7
    assert (app.settings.max_connections, app.settings.max_waiting) == (50, 3)
    assert (app.settings.header_timeout, app.settings.body_timeout) == (2, 4)
