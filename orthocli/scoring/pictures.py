"""`orthocli score --plot PATH`: where each checkpoint's picture goes, checked before any scoring,
and the picture of one scored checkpoint (`filter_similarity` computes it, `plot` draws it).

With one checkpoint PATH is the PNG, unless it is an existing folder. With several (or a folder)
PATH must be an existing, writable folder, and each checkpoint gets `<stem>.png` there; two
checkpoints of the same stem (`a/m.pt`, `b/m.pt`, or `m.pt` beside `m.safetensors`) get
`<stem>.png`, `<stem>-2.png`, ... in the order of the command line. An existing picture is refused
without --force, before anything is scored.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orthocli.errors import OutputError

if TYPE_CHECKING:
    from orthocli.scoring.checkpoint_scores import CheckpointScores


def plan_pictures(plot: Path, checkpoints: Sequence[Path], *, force: bool) -> list[Path]:
    """The picture path of each checkpoint, in order; OutputError (exit 5) for a folder that is
    missing or read-only, a picture that exists without `force`, or one that is an input; a
    UsageError (exit 2) without matplotlib. Writes nothing."""
    from orthocli.atomic import check_output
    from orthocli.scoring.plot import need_matplotlib

    need_matplotlib("--plot")
    inputs = [str(p) for p in checkpoints]
    if not plot.is_dir():
        if len(checkpoints) > 1:
            what = "is a file" if plot.exists() else "no such folder"
            raise OutputError(
                f"{plot}: {what}; with several checkpoints --plot names a folder (one picture per checkpoint):"
                " create it first"
            )
        path = check_output(plot, force=force, inputs=inputs)
        _writable(path.parent)
        return [path]
    _writable(plot)
    paths, taken = [], set()
    for checkpoint in checkpoints:
        stem, k = Path(checkpoint).stem or "checkpoint", 1
        name = f"{stem}.png"
        while name in taken:
            k += 1
            name = f"{stem}-{k}.png"
        taken.add(name)
        paths.append(check_output(plot / name, force=force, inputs=inputs))
    return paths


def _writable(folder: Path) -> None:
    """OutputError unless a file can be created in `folder`: tried, not asked (`os.access` says yes to
    root on a read-only mount), so a picture never fails after the scoring."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".orthocli-", suffix=".part"):
            pass
    except OSError:
        raise OutputError(f"{folder}: folder is not writable (no file can be created in it)") from None


def draw_picture(path: Path, scores: CheckpointScores) -> Path:
    """Write the picture of a scored checkpoint's layers to `path` (atomically); the path."""
    from orthocli.scoring.filter_similarity import layer_pictures
    from orthocli.scoring.plot import plot_layer_pictures

    title = f"{scores.path}: filter redundancy per conv layer (random filters' level dashed)"
    plot_layer_pictures(path, layer_pictures(scores.layers), title)
    return path
