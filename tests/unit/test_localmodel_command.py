"""`localmodel`: the dispatcher hands each command to the part that owns it, and says so when it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from localmodel_runtime import localmodel_command
from localmodel_runtime.localmodel_command import COMMANDS, Command, main


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in COMMANDS)


@pytest.mark.parametrize("argv", [[], ["frobnicate"]])
def test_no_or_unknown_command_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "localmodel: error:" in err and "Traceback" not in err


def test_operator_tools_get_the_command_name(tmp_path: Path) -> None:
    out = tmp_path / "crd.yaml"
    assert main(["crd", "-o", str(out)]) == 0
    assert "kind: CustomResourceDefinition" in out.read_text()


def test_local_mode_gets_the_arguments_after_up(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["up", "--help"])
    assert exited.value.code == 0
    assert "usage: localmodel up" in capsys.readouterr().out


def test_a_part_that_is_not_installed_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(localmodel_command.COMMANDS, "up", Command("localmodel_missing_part", "x", False))
    assert main(["up"]) == 2
    assert "up is not available in this installation" in capsys.readouterr().err
