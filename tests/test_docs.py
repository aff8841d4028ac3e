"""Every command has help text and an example, and every option a user meets is in the README."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main

from orthocli.cli import app

README = (Path(__file__).parent.parent / "README.md").read_text()
COMMANDS = ["score", "prune", "reinit", "train", "export"]


def click_command(name):
    group = typer.main.get_command(app)
    return group.commands[name]


def test_the_five_commands_exist():
    assert sorted(typer.main.get_command(app).commands) == sorted(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help_an_example_and_a_readme_section(name):
    cmd = click_command(name)
    assert cmd.help and len(cmd.help.splitlines()[0]) > 20
    assert cmd.epilog and f"orthocli {name}" in cmd.epilog
    assert f"## `orthocli {name}`" in README


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_is_documented(name):
    missing = []
    for param in click_command(name).params:
        if param.param_type_name != "option" or param.name == "help":
            continue
        longs = [o for o in param.opts + param.secondary_opts if o.startswith("--")]
        if not any(f"`{o}" in README or f" {o}" in README for o in longs):
            missing.append("/".join(longs))
    assert missing == [], f"options of '{name}' missing from README.md: {missing}"


def test_global_options_are_documented():
    for opt in ("--debug", "--version"):
        assert opt in README
