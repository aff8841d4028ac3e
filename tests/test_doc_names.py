"""Every `module.Name` the docs and the docstrings write names something that exists: a module of
orthocli (by its dotted path, or by its last part alone where that is one module) and a name in it
(a class, function or constant; a class's method or field). Read from the source, nothing imported,
so a name in a module that needs an optional extra is checked too."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "orthocli"
TOKEN = re.compile(r"`(?:orthocli\.)?([a-z_][a-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?:\(\))?`")


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


MODULES = _modules()
BY_LAST = {}
for _name in MODULES:
    BY_LAST.setdefault(_name.rsplit(".", 1)[-1], []).append(_name)


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def _names(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """The names a module or class body defines (imports and assignments included)."""
    out: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        out[n.id] = node
            if any(isinstance(t, ast.Name) and t.id == "_WHERE" for t in node.targets):  # a face's names
                out.update(dict.fromkeys(ast.literal_eval(node.value), node))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                out[(a.asname or a.name).split(".")[0]] = node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            out.update(_names(node.body))
    return out


def _class_has(module: str, cls: ast.ClassDef, attr: str) -> bool:
    names = _names(cls.body)
    if attr in names:
        return True
    init = names.get("__init__")  # attributes set in __init__ (self.x = ...)
    if init is not None and any(
        isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self" and n.attr == attr
        for n in ast.walk(init)
    ):
        return True
    top = _names(_tree(MODULES[module]).body)
    return any(isinstance(top.get(b.id), ast.ClassDef) and _class_has(module, top[b.id], attr)
               for b in cls.bases if isinstance(b, ast.Name))  # fmt: skip


# Words that end a file's name, not a Python name (`config.py`, `model.pt`)
EXTENSIONS = {"py", "md", "pt", "pth", "pt2", "bin", "npz", "pkl", "json", "toml", "txt", "png", "safetensors",
              "state", "ts", "jit", "onnx", "torchscript", "yaml", "whl", "gz", "zip"}  # fmt: skip
PACKAGES = {name for name in MODULES if "." not in name and (PACKAGE / name).is_dir()}


@cache
def _defined_anywhere() -> set[str]:
    """Every name a module of orthocli defines at its top level (not what it imports)."""
    out = set()
    for path in MODULES.values():
        out |= {n for n, node in _names(_tree(path).body).items() if not isinstance(node, (ast.Import, ast.ImportFrom))}
    return out


def _meant_as_a_name(parts: list[str]) -> bool:
    """`model.eval` is a variable's method, `config.unit` an object's field: a token is checked when
    it starts with a package (`method.subnet.x`), or what follows its first part is a class or
    constant (capitalised) or a name some module of orthocli defines (`models.build_model`)."""
    if parts[-1] in EXTENSIONS:
        return False
    return parts[0] in PACKAGES or parts[1][0].isupper() or parts[1] in _defined_anywhere()


def _missing(token: str) -> str | None:
    """Why `token` names nothing, or None; tokens that do not start with a module are not checked."""
    parts = token.split(".")
    if not _meant_as_a_name(parts):
        return None
    for n in range(len(parts) - 1, 0, -1):  # the longest leading part that is a module
        head = ".".join(parts[:n])
        found = [head] if head in MODULES else [m for m in MODULES if m.endswith("." + head) or m == head]
        if len(found) == 1:
            module, rest = found[0], parts[n:]
            break
    else:
        return None
    names = _names(_tree(MODULES[module]).body)
    if MODULES[module].name != "__init__.py":  # a pointer leads to where a name is defined, not imported
        names = {n: node for n, node in names.items() if not isinstance(node, (ast.Import, ast.ImportFrom))}
    if rest[0] not in names:
        if f"{module}.{rest[0]}" in MODULES:  # a submodule
            return None
        return f"orthocli.{module} has no {rest[0]}"
    node = names[rest[0]]
    if len(rest) > 1 and isinstance(node, ast.ClassDef) and not _class_has(module, node, rest[1]):
        return f"orthocli.{module}.{rest[0]} has no {rest[1]}"
    return None


def _docstrings(path: Path):
    for node in ast.walk(_tree(path)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield doc
    for line in path.read_text().splitlines():  # comments name things too
        if "#" in line:
            yield line.split("#", 1)[1]


SOURCES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"] + sorted(MODULES.values())


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_name_written_exists(path):
    texts = list(_docstrings(path)) if path.suffix == ".py" else [path.read_text()]
    wrong = sorted({why for text in texts for token in TOKEN.findall(text) if (why := _missing(token))})
    assert wrong == [], f"{path.relative_to(ROOT)} names what does not exist: {wrong}"


def test_the_check_finds_a_wrong_name():
    assert _missing("subnet.SubNetwork") is None and _missing("method.subnet.SubNetwork.remove") is None
    assert _missing("controller.SubNetwork") == "orthocli.method.controller has no SubNetwork"
    assert _missing("config.TrainConfig.no_such_field") == "orthocli.config.TrainConfig has no no_such_field"
    assert _missing("training.TrainConfig") == "orthocli.training has no TrainConfig"  # it is config's
    assert _missing("drops.DropRule") == "orthocli.method.drops has no DropRule"
    assert _missing("torch.compile") is None and _missing("model.eval") is None  # not orthocli's names
