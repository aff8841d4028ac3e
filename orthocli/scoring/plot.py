"""The pictures orthocli draws (PNG, written atomically). Needs matplotlib (the optional extra
`plot`); nothing here computes what it draws.

- `plot_history` (`train --plot`): validation accuracy per epoch, sub-network phases shaded (figure
  1 of the paper), and each candidate layer's mean score against that of random filters of its
  shape, with drops and re-introductions marked: the method's arm, the control's and the random
  arm's.
- `plot_layer_pictures` (`score --plot`): per conv layer, the |cosine| matrix between its filters
  ordered by score and the histogram of its scores with the random-filter level marked
  (`filter_similarity.LayerPicture`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orthocli.errors import UsageError

if TYPE_CHECKING:
    from orthocli.scoring.filter_similarity import LayerPicture

EXTRA = "pip install 'orthocli[plot]'"
DPI = 100
# score --plot: one row of this many inches per layer under a title band; the width is fixed
LAYER_ROW, TITLE_BAND, PICTURE_WIDTH = 3.0, 0.6, 10.0
MAX_LAYERS = 200  # 200 rows of 300 px: Agg draws at most 2^16 px a side

# train --plot: the arms, as drawn (label, colour, line style)
ARMS = {
    "repr": ("RePr", "tab:blue", "-"),
    "baseline": ("control (no drops)", "tab:gray", "--"),
    "random": ("random drops", "tab:green", ":"),
}


def need_matplotlib(option: str) -> None:
    """UsageError, one line naming the extra, when matplotlib is missing: checked before any work."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(f"{option} needs matplotlib: {EXTRA}") from None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    from orthocli.atomic import atomic_write

    plt = _pyplot()
    try:
        # the outputs were checked before any work: the file is ours to replace
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI), force=True)
    finally:
        plt.close(fig)


# --- train --plot -------------------------------------------------------------------------------


def plot_history(path: Path, histories: Mapping[str, list], chance: Mapping[str, float] | None = None) -> None:
    """Write the PNG to `path`: one line per arm ("repr", "baseline", "random") in the accuracy panel
    above, and in the panel below each layer of `chance` (layer -> random filters' mean score) as
    its mean score over chance per epoch (the history's `layer_means`), one colour per layer, one
    line style per arm."""
    plt = _pyplot()
    fig, (acc, red) = plt.subplots(2, 1, figsize=(8, 8), sharex=True, gridspec_kw={"height_ratios": [1, 1]})
    method = histories.get("repr", [])
    _phases(acc, method, legend=True)
    _phases(red, method, legend=False)
    for role, history in histories.items():
        points = [(e["epoch"], 100 * e["val_acc"]) for e in history if e.get("val_acc") is not None]
        if points:
            label, color, style = ARMS[role]
            acc.plot(*zip(*points), style, color=color, label=label)
    acc.set_ylabel("validation accuracy (%)")
    acc.grid(alpha=0.3)
    acc.legend(loc="lower right", fontsize="small")

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = False
    for i, (name, level) in enumerate((chance or {}).items()):
        if level <= 0:
            continue
        for role, history in histories.items():
            points = [(e["epoch"], e["layer_means"][name] / level) for e in history if name in e.get("layer_means", {})]
            if points:
                style = ARMS[role][2]
                label = name if role == "repr" else None
                red.plot(*zip(*points), style, color=colors[i % len(colors)], label=label, lw=1.2)
                drawn = True
    red.axhline(1.0, color="black", lw=0.8, label="random filters (1x)")
    if not drawn:
        red.text(0.5, 0.5, "no layer scores in these runs", transform=red.transAxes, ha="center", color="gray")
    from matplotlib.ticker import MaxNLocator

    red.xaxis.set_major_locator(MaxNLocator(integer=True))
    red.set_xlabel("epoch")
    red.set_ylabel("mean score / random filters'")
    red.set_title(
        "candidate layers against chance: " + ", ".join(ARMS[r][0] + " " + _STYLE_WORDS[ARMS[r][2]] for r in histories),
        fontsize="small",
    )
    red.grid(alpha=0.3)
    red.legend(loc="upper right", fontsize="x-small", ncol=2)
    fig.tight_layout()
    _save(fig, path)


_STYLE_WORDS = {"-": "solid", "--": "dashed", ":": "dotted"}


def _phases(ax, history: Sequence[dict], legend: bool) -> None:
    """Sub-network phases shaded; a drop (its first epoch begins) and a re-introduction (its last
    epoch ends) marked by vertical lines."""
    labels = {"sub-network (S2)", "drop", "re-introduction"} if legend else set()

    def label(text: str) -> str | None:
        if text in labels:
            labels.discard(text)
            return text
        return None

    subnet = [e["epoch"] for e in history if e["phase"] == "subnet"]
    for epoch in subnet:
        ax.axvspan(epoch - 1, epoch, color="tab:orange", alpha=0.15, lw=0, label=label("sub-network (S2)"))
    for epoch in subnet:
        if epoch - 1 not in subnet:
            ax.axvline(epoch - 1, color="tab:red", lw=0.8, ls="--", label=label("drop"))
        if epoch + 1 not in subnet:
            ax.axvline(epoch, color="tab:purple", lw=0.8, label=label("re-introduction"))


# --- score --plot -------------------------------------------------------------------------------


def picture_size(layers: int) -> tuple[int, int]:
    """(width, height) in pixels of `score --plot`'s picture of a checkpoint with `layers` conv layers."""
    return round(PICTURE_WIDTH * DPI), round((LAYER_ROW * layers + TITLE_BAND) * DPI)


def plot_layer_pictures(path: Path, pictures: Sequence[LayerPicture], title: str) -> None:
    """Write the PNG to `path`: a row per layer, its |cosine| matrix (filters ordered by score, the
    most redundant first) beside the histogram of its scores with the random-filter level marked."""
    if not pictures:
        raise UsageError("no conv layer to draw")
    if len(pictures) > MAX_LAYERS:
        raise UsageError(
            f"{len(pictures)} conv layers: one picture draws at most {MAX_LAYERS}; choose some with --layers/--exclude"
        )
    plt = _pyplot()
    width, height = picture_size(len(pictures))
    fig = plt.figure(figsize=(width / DPI, height / DPI))
    top = 1 - TITLE_BAND * DPI / height
    bottom = 0.4 * DPI / height  # room for the last row's axis label
    grid = fig.add_gridspec(len(pictures), 2, width_ratios=[1, 1.5], top=top, bottom=bottom, hspace=0.5, wspace=0.3)
    fig.suptitle(title, y=1 - 0.25 * TITLE_BAND * DPI / height, fontsize="medium")
    for row, p in enumerate(pictures):
        ratio = "" if p.ratio is None else f" ({p.ratio:.2f}x)"
        matrix = fig.add_subplot(grid[row, 0])
        image = matrix.imshow(p.cosine, vmin=0.0, vmax=1.0, cmap="magma", interpolation="nearest")
        matrix.set_title(f"{p.name}: |cos| between filters, most redundant first", fontsize="small")
        matrix.set_xticks([])
        matrix.set_yticks([])
        fig.colorbar(image, ax=matrix, fraction=0.046, pad=0.04)
        hist = fig.add_subplot(grid[row, 1])
        counts, edges = p.histogram()
        hist.bar(edges[:-1], counts, width=edges[1:] - edges[:-1], align="edge", color="tab:blue", alpha=0.7)
        hist.axvline(p.chance, color="black", ls="--", label=f"random filters {p.chance:.3f}")
        hist.axvline(p.mean, color="tab:red", label=f"mean {p.mean:.3f}{ratio}")
        hist.set_title(f"{p.name}: {len(p.scores)} filter scores", fontsize="small")
        hist.set_xlabel("orthogonality score (higher = more redundant)", fontsize="x-small")
        hist.legend(fontsize="x-small", loc="upper right")
    _save(fig, path)
