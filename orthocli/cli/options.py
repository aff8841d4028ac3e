"""The method's options shared by `prune`, `reinit` and `train` (written once, used by all). Their
defaults are `ReprConfig`'s (`DEFAULTS`), the one source of the method's options."""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any, Literal, Optional, TypeVar

import typer

from orthocli.config import ADAPTIVE_CAP, DATA_RANKINGS, RANKINGS, ReprConfig, option_name

DEFAULTS = ReprConfig()  # read, never changed: each command's parameter defaults come from it
LIST_OPTIONS = ("layers", "exclude")  # None when not given; an empty list in the config
C = TypeVar("C", bound=ReprConfig)


def config_from(cls: type[C], params: dict[str, Any]) -> C:
    """`cls` (`ReprConfig`, `TrainConfig`) from a command's parameters that are its options, matched
    by option name (`config.option_name`); an option the command has no parameter for keeps its
    default. The commands build their config this way, never option by option."""
    by_option = {option_name(f.name): f.name for f in fields(cls)}
    given = {k: list(v or []) if k in LIST_OPTIONS else v for k, v in params.items() if k in by_option}
    return cls(**{by_option[k]: v for k, v in given.items()})


# Neither --ratio nor --threshold: the adaptive rule (method.drops.drop_counts), said in each option's help.
RatioOpt = Annotated[
    Optional[float],
    typer.Option(
        "--ratio",
        "-r",
        help="Drop this fraction of the candidate filters (0 < r < 1; cut by count, at least one) instead of the"
        " default: each layer drops the share of its filters by which its mean score exceeds random filters'"
        f" (none from a layer no more redundant than chance; at most {ADAPTIVE_CAP:.0%}).",
        show_default=False,
    ),
]
ThresholdOpt = Annotated[
    Optional[float],
    typer.Option(
        "--threshold",
        help="Drop every filter whose score is above this value, instead of the default rule (see --ratio).",
        show_default=False,
    ),
]
ScopeOpt = Annotated[
    str,
    typer.Option(
        "--scope",
        help="'layer': each layer by itself; 'global': rank all candidate filters together by --ratio (the"
        " authors' choice).",
    ),
]
MinKeepOpt = Annotated[int, typer.Option("--min-keep", min=1, help="Filters every layer keeps, whatever the ranking.")]
SkipFirstOpt = Annotated[
    bool,
    typer.Option(
        "--skip-first/--no-skip-first",
        help="Leave the first conv layer alone (its few-dimensional filters always look redundant).",
    ),
]
SkipLastOpt = Annotated[
    bool,
    typer.Option(
        "--skip-last/--no-skip-last",
        help="Where the model's graph is unknown (a bare state dict): leave the last conv layer alone, as its channels are"
        " likely the model's outputs. With a model, every conv whose channels reach the output is left alone anyway.",
    ),
]
ReinitScaleOpt = Annotated[
    float,
    typer.Option(
        "--reinit-scale",
        help="Norm of a re-introduced filter, as a multiple of the mean norm of its layer's kept filters.",
    ),
]
ReinitFanOutOpt = Annotated[
    Literal["keep", "zero"],
    typer.Option(
        "--reinit-fan-out",
        help="What the next layer does with a re-introduced filter's channel: zero its weights, so the output is"
        " unchanged at re-introduction and the next layer learns the new filter, or keep them (the paper).",
    ),
]
RankingOpt = Annotated[
    str,
    typer.Option(
        "--ranking",
        help=f"Which filters of a layer drop, as many as the rule says: {', '.join(r for r in RANKINGS if r not in DATA_RANKINGS)}"
        " (orthogonality: the most redundant first; l1: smallest weight L1 norm; bn-scale: smallest |scale| of the"
        f" following BatchNorm). {' and '.join(DATA_RANKINGS)} need training batches: orthocli train --control.",
    ),
]
