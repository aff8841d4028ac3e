"""The docs a user reads match the tool: the generated command reference is current, every command
has help, an example and a guide section, the README's exit codes are the ones the code uses, the
Markdown links lead somewhere (to a file, and to a heading where they name one), and the results
page speaks a user's language (the benchmarks' history is benchmarks/HISTORY.md)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import typer.main

from orthocli import errors
from orthocli.cli import app

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
GUIDE = (ROOT / "docs" / "commands.md").read_text()
COMMANDS = ["score", "prune", "reinit", "train", "export"]


def _reference_module():
    spec = importlib.util.spec_from_file_location("make_cli_reference", ROOT / "docs" / "make_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def click_command(name):
    return typer.main.get_command(app).commands[name]


def test_the_five_commands_exist():
    assert sorted(typer.main.get_command(app).commands) == sorted(COMMANDS)


def test_the_command_reference_is_current():
    reference = _reference_module()
    assert reference.TARGET.read_text() == reference.render(), (
        "docs/cli.md is stale: run python docs/make_cli_reference.py"
    )


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help_an_example_and_a_guide_section(name):
    cmd = click_command(name)
    assert cmd.help and len(cmd.help.splitlines()[0]) > 20
    assert cmd.epilog and f"orthocli {name}" in cmd.epilog
    assert f"## `orthocli {name}`" in GUIDE


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_is_in_the_reference_with_its_help(name):
    text = _reference_module().render()
    section = text.split(f"## `orthocli {name}`")[1].split("\n## ")[0]
    for param in click_command(name).params:
        if param.param_type_name != "option" or param.hidden:
            continue
        row = next((line for line in section.splitlines() if f"`{param.opts[0]}`" in line), None)
        assert row is not None, f"{param.opts[0]} of '{name}' is not in docs/cli.md"
        assert " ".join((param.help or "").split())[:40].replace("|", "\\|") in row


def test_readme_exit_codes_are_the_codes_the_code_uses():
    table = README.split("## Exit codes")[1].split("\n## ")[0]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", table, flags=re.M)}
    used = {value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    assert documented == used


def test_readme_links_lead_to_files_and_it_stays_short():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links to missing {target}"
    assert len(README.splitlines()) <= 220


def test_global_options_are_documented():
    for opt in ("--debug", "--version"):
        assert f"`{opt}`" in (ROOT / "docs" / "cli.md").read_text()


def _heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings (fenced code left out)."""
    anchors, seen, fenced = set(), {}, False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = None if fenced else re.match(r"#{1,6} (.+)", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


MARKDOWN = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    ROOT / "benchmarks" / "HISTORY.md",
    *sorted((ROOT / "docs").glob("*.md")),
]


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_links_lead_to_a_file_and_a_heading(page):
    for target, anchor in re.findall(r"\]\(([^)\s#]*)(?:#([^)\s]*))?\)", page.read_text()):
        if target.startswith(("http:", "https:", "mailto:")):
            continue
        dest = (page.parent / target) if target else page
        assert dest.exists(), f"{page.name} links to missing {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _heading_anchors(dest.read_text()), (
                f"{page.name} links to {target}#{anchor}: no such heading"
            )


def test_results_page_is_the_current_evidence_and_history_keeps_the_rounds():
    results = (ROOT / "docs" / "results.md").read_text()
    visible = re.sub(r"\]\([^)]*\)", "]", results)  # link targets may name the history's headings
    assert not re.search(r"\b[Rr]ounds? \d", visible), "round numbers belong in benchmarks/HISTORY.md"
    assert not re.search(r"\bcommit [0-9a-f]{7}", visible), "commit hashes belong in benchmarks/HISTORY.md"
    assert "benchmarks/HISTORY.md" in results
    history = (ROOT / "benchmarks" / "HISTORY.md").read_text()
    assert "docs/results.md" in history
    for heading in (
        "## Per data set",
        "## Verdict",
        "## Does the ranking matter?",
        "## How to reproduce",
        "## Speed",
        "## GPU",
    ):
        assert heading in results, heading
