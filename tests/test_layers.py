"""The folders are the layers (docs/architecture.md): a module imports only from its own folder, the
folders below it and the shared modules at the root, never upward, not even inside a function.
Read from the source (every import statement), nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "orthocli"

# Low to high; a module may import from its own layer's folder and from any lower layer. Folders on
# one line are side by side: neither imports the other.
LAYERS = [
    {"shared"},  # config, errors, seeding, formats, atomic, arrays, trees, faces
    {"checkpoints.readers", "data"},
    {"network"},
    {"checkpoints"},
    {"method"},
    {"scoring"},
    {"training", "export"},
    {"api"},  # api.py, lightning_callback.py, the package's face
    {"cli"},
    {"main"},
]
SHARED = {"config", "errors", "seeding", "formats", "atomic", "arrays", "trees", "faces"}
RANK = {folder: rank for rank, layer in enumerate(LAYERS) for folder in layer}


def folder(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts or parts[0] in ("api", "lightning_callback", "__init__"):
        return "api"
    if parts[0] == "__main__":
        return "main"
    if parts[0] in SHARED:
        return "shared"
    if parts[:2] == ["checkpoints", "readers"]:
        return "checkpoints.readers"
    return parts[0]


def imports(path: Path, module: str) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("orthocli.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("orthocli."):
            out.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{module}: a relative import; write the module's full path")
    return out


def modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = ("orthocli", *f.relative_to(PACKAGE).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def test_every_folder_has_a_layer():
    assert {folder(m) for m in modules()} == set(RANK)


def test_nothing_imports_a_layer_above_it_or_one_beside_it():
    wrong = []
    for module, path in modules().items():
        here = folder(module)
        for target in imports(path, module):
            there = folder(target)
            if RANK[there] > RANK[here] or (RANK[there] == RANK[here] and there != here):
                wrong.append(f"{module} imports {target} ({there} is not below {here})")
    assert wrong == []


def test_the_shared_modules_import_only_each_other():
    for module, path in modules().items():
        if folder(module) == "shared":
            assert {folder(t) for t in imports(path, module)} <= {"shared"}, module


def test_the_check_sees_an_upward_import():
    assert RANK[folder("orthocli.method.subnet")] > RANK[folder("orthocli.network.compact")]
    assert folder("orthocli.checkpoints.readers.zip") == "checkpoints.readers"
    assert RANK["checkpoints.readers"] < RANK["network"] < RANK["checkpoints"]
