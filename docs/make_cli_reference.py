"""Write docs/cli.md, the command reference, from the commands' own help.

    python docs/make_cli_reference.py          # rewrite docs/cli.md
    python docs/make_cli_reference.py --check  # exit 1 if docs/cli.md is stale (tests/test_docs.py runs this)

The reference is built from the Click objects Typer makes (names, types, defaults, help text,
panels), not from a terminal rendering, so it does not change with the terminal width or the
Rich version. It reads the Click objects by duck typing: Typer >= 0.24 carries its own copy of
Click, so `isinstance` against an installed `click` would not match.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path

import typer.main

from orthocli.cli import app

TARGET = Path(__file__).with_name("cli.md")
WORKFLOW = ["score", "prune", "reinit", "train", "export"]  # the order the reference lists them
HEADER = """# Command reference

Generated from the commands' own `--help` by `python docs/make_cli_reference.py`; do not edit by
hand (the test suite fails when this file is stale). What the commands do and why: see
[commands.md](commands.md).
"""


def _is_option(param) -> bool:
    return param.param_type_name == "option"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _names(param) -> str:
    names = [*param.opts, *getattr(param, "secondary_opts", [])]
    return ", ".join(f"`{n}`" for n in names)


_NAMES = {"str": "text", "Path": "path", "int": "integer", "float": "number", "bool": "flag"}


def _type(param) -> str:
    if _is_option(param) and param.is_flag:
        return "flag"
    # Typer >= 0.24 keeps the annotation; older Typer (on Click) keeps a Click type.
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if annotation is None:
        choices = getattr(param.type, "choices", None)
        return " \\| ".join(map(str, choices)) if choices else _NAMES.get(param.type.name, param.type.name)
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(map(str, typing.get_args(annotation)))
    if typing.get_origin(annotation) is list:
        return _NAMES.get(typing.get_args(annotation)[0].__name__, "text") + ", repeatable"
    return _NAMES.get(getattr(annotation, "__name__", ""), "text")


def _default(param) -> str:
    if not getattr(param, "show_default", True) or param.default is None:
        return ""
    value = param.default
    if _is_option(param) and param.is_flag and param.secondary_opts:
        return param.opts[0] if value else param.secondary_opts[0]
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"`{value}`"


def _usage(arg) -> str:
    text = arg.name.upper() + ("..." if arg.nargs == -1 else "")
    return text if arg.required else f"[{text}]"


def _section(name: str, cmd) -> list[str]:
    args = [p for p in cmd.params if p.param_type_name == "argument"]
    usage = " ".join([f"orthocli {name} [OPTIONS]", *(_usage(p) for p in args)])
    lines = [f"## `orthocli {name}`", "", _cell(cmd.help or ""), "", "```", usage, "```", ""]
    if args:
        lines += ["| argument | help |", "| --- | --- |"]
        lines += [f"| `{p.name.upper()}` | {_cell(getattr(p, 'help', '') or '')} |" for p in args]
        lines.append("")
    panels: dict[str, list] = {}
    for p in cmd.params:
        if _is_option(p) and not p.hidden:
            panels.setdefault(getattr(p, "rich_help_panel", None) or "Options", []).append(p)
    for panel, options in panels.items():
        lines += [f"**{panel}**", "", "| option | type | default | help |", "| --- | --- | --- | --- |"]
        lines += [f"| {_names(p)} | {_type(p)} | {_default(p)} | {_cell(p.help or '')} |" for p in options]
        lines.append("")
    if cmd.epilog:
        lines += ["Examples:", "", "```sh", *[e for e in cmd.epilog.splitlines() if e.strip()], "```", ""]
    return lines


def render() -> str:
    group = typer.main.get_command(app)
    lines = [HEADER, "```", "orthocli [OPTIONS] COMMAND [ARGS]...", "```", "", _cell(group.help or ""), ""]
    lines += ["| global option | help |", "| --- | --- |"]
    lines += [f"| {_names(p)} | {_cell(p.help or '')} |" for p in group.params if _is_option(p)]
    lines.append("")
    for name in sorted(group.commands, key=lambda n: (WORKFLOW + [n]).index(n)):
        lines += _section(name, group.commands[name])
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is stale: run python docs/make_cli_reference.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
