"""The picture of a run: validation accuracy per epoch, sub-network phases shaded (figure 1 of
the paper). Needs matplotlib (the optional extra `plot`)."""

from __future__ import annotations

from pathlib import Path


def plot_history(path: Path, histories: dict[str, list]) -> None:
    """Write the PNG to `path` (atomically), one line per run ("repr", "baseline")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from orthocli.atomic import atomic_write

    fig, ax = plt.subplots(figsize=(8, 4.5))
    shaded = False
    for e in histories.get("repr", []):
        if e["phase"] == "subnet":
            ax.axvspan(
                e["epoch"] - 1,
                e["epoch"],
                color="tab:orange",
                alpha=0.15,
                lw=0,
                label=None if shaded else "sub-network (S2)",
            )
            shaded = True
    styles = {"repr": ("RePr", "tab:blue", "-"), "baseline": ("baseline (no drops)", "tab:gray", "--")}
    for role, history in histories.items():
        points = [(e["epoch"], 100 * e["val_acc"]) for e in history if e["val_acc"] is not None]
        if points:
            label, color, style = styles[role]
            ax.plot(*zip(*points), style, color=color, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120), force=True)
    plt.close(fig)
