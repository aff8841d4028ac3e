"""Choosing which filters to drop (the method's step 3, "drop"; docs/method.md), shared by `orthocli prune` and
`orthocli train`: a DropRule says how many and how to rank; `choose_drops` turns scores into
indices (pure); `plan_drops` scores the candidate layers and returns a DropPlan."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from orthocli.droprule import ADAPTIVE_CAP, DEFAULT_DROP
from orthocli.errors import UsageError
from orthocli.layer_patterns import check as check_patterns
from orthocli.layer_scores import LayerScores, score_layers
from orthocli.layers import ConvLayer, select


@dataclass(frozen=True)
class DropRule:
    """How many filters to drop and how to rank them. With neither a ratio nor a threshold (the
    default) the rule is adaptive: each layer drops the share of its filters by which its mean
    score exceeds that of random filters of its shape, J * (1 - chance/mean) rounded down, at most
    30% of the layer (ADAPTIVE_CAP). A layer no more redundant than chance drops nothing, so the
    drops follow the redundancy the network has and stop once the method has removed it.

    ratio: instead, a fixed fraction of the candidate filters (cut by count, so ties never change
           it), rounded down but at least one filter: 10% of an 8-filter layer drops 1, not none.
    threshold: instead, drop every filter whose score is above this value.
    scope: "layer" drops from each layer by itself; "global" ranks all candidate filters of the
           network together by a ratio (the authors' choice).
    min_keep: filters every layer keeps, whatever the ranking says.
    The defaults are the one default rule (`droprule.DEFAULT_DROP`).
    """

    ratio: float | None = None
    threshold: float | None = None
    scope: str = DEFAULT_DROP.scope
    min_keep: int = DEFAULT_DROP.min_keep

    def __post_init__(self) -> None:
        if self.ratio is not None and self.threshold is not None:
            raise ValueError("ratio and threshold are two ways to choose the filters; give one")
        if self.ratio is not None and not 0 < self.ratio < 1:
            raise ValueError(f"ratio must be between 0 and 1 (exclusive), got {self.ratio}")
        if self.scope not in ("global", "layer"):
            raise ValueError(f"scope must be 'global' or 'layer', got {self.scope!r}")
        if self.adaptive and self.scope != "layer":
            raise ValueError("scope 'global' ranks the network's filters by a ratio: give a ratio too")
        if self.min_keep < 1:
            raise ValueError(f"min_keep must be at least 1, got {self.min_keep}")

    @property
    def adaptive(self) -> bool:
        """Neither a ratio nor a threshold: each layer drops by its redundancy above chance."""
        return self.ratio is None and self.threshold is None


def _ranked(scores: Sequence[torch.Tensor], layers: Sequence[int]) -> list[tuple[float, int, int]]:
    """(score, layer, filter) from most to least redundant; ties break by layer, then filter."""
    items = [(-s, li, f) for li in layers for f, s in enumerate(scores[li].tolist())]
    items.sort()
    return [(-neg, li, f) for neg, li, f in items]


def choose_drops(
    scores: Sequence[torch.Tensor], rule: DropRule, chance: Sequence[float] | None = None
) -> list[torch.Tensor]:
    """Indices (sorted, int64) of the filters to drop in each layer, one tensor per layer.
    chance: each layer's score for random filters (`LayerScores.chance`), needed by an adaptive rule."""
    if rule.adaptive and (chance is None or len(chance) != len(scores)):
        raise ValueError("an adaptive rule needs each layer's chance score")
    sizes = [len(s) for s in scores]
    room = [max(0, n - rule.min_keep) for n in sizes]  # most each layer may lose
    dropped: list[list[int]] = [[] for _ in scores]

    def take(candidates: list[tuple[float, int, int]], quota: int | None) -> None:
        for s, li, f in candidates:
            if quota is not None and quota <= 0:
                break
            if rule.threshold is not None and not s > rule.threshold:
                break
            if len(dropped[li]) < room[li]:
                dropped[li].append(f)
                if quota is not None:
                    quota -= 1

    if rule.scope == "global":
        quota = None if rule.ratio is None else _quota(rule.ratio, sum(sizes))
        take(_ranked(scores, range(len(scores))), quota)
    else:
        for li, n in enumerate(sizes):
            if rule.adaptive:
                quota = _excess_quota(float(scores[li].mean()) if n else 0.0, chance[li], n)
            else:
                quota = None if rule.ratio is None else _quota(rule.ratio, n)
            take(_ranked(scores, [li]), quota)
    return [torch.tensor(sorted(d), dtype=torch.long) for d in dropped]


def _quota(ratio: float, filters: int) -> int:
    # At least one: a small ratio of a narrow layer would otherwise drop nothing, and the method,
    # silently, would not run at all (`min_keep` still has the last word).
    return max(1, math.floor(ratio * filters + 1e-9))


def _excess_share(mean: float, chance: float) -> float:
    """The share of a layer by which its mean score exceeds chance; 0 or less at or below it (a
    layer of one filter scores 0 against a chance of 0)."""
    return 1 - chance / mean if mean > 0 else -math.inf


def _excess_quota(mean: float, chance: float, filters: int) -> int:
    # None at or below chance, and never more than the cap: filters of many weights lie far above
    # chance without being copies.
    share = _excess_share(mean, chance)
    return math.floor(filters * min(share, ADAPTIVE_CAP) + 1e-9) if share > 0 else 0


@dataclass
class DropPlan:
    rule: DropRule
    candidates: list[LayerScores]  # scored layers that may lose filters, network order
    excluded: list[str]  # conv layers left alone, network order
    drops: dict[str, torch.Tensor]  # layer name -> dropped filter indices (sorted)
    reasons: dict[str, str] = field(default_factory=dict)  # excluded layer -> why

    @property
    def total_filters(self) -> int:
        return sum(c.layer.filters for c in self.candidates)

    @property
    def total_dropped(self) -> int:
        return sum(len(d) for d in self.drops.values())

    def rule_dict(self) -> dict:
        return {**asdict(self.rule), "adaptive": self.rule.adaptive}

    def to_json(self) -> dict:
        layers = []
        for c in self.candidates:
            idx = self.drops.get(c.layer.name, torch.zeros(0, dtype=torch.long))
            layers.append(
                {
                    "name": c.layer.name,
                    "filters": c.layer.filters,
                    "dropped": idx.tolist(),
                    "kept": c.layer.filters - len(idx),
                    "dropped_scores": c.scores[idx].tolist(),
                    "mean": c.mean,  # the layer's mean score, and that of random filters of its shape:
                    "chance": c.chance,  # what the adaptive rule compares
                }
            )
        return {
            "rule": self.rule_dict(),
            "layers": layers,
            "excluded": self.excluded,
            "left_out": [{"name": n, "reason": self.reasons.get(n, "")} for n in self.excluded],
            "total": {"filters": self.total_filters, "dropped": self.total_dropped},
        }


def plan_drops(
    layers: list[ConvLayer],
    rule: DropRule,
    *,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    skip_first: bool = DEFAULT_DROP.skip_first,
    skip_last: bool = DEFAULT_DROP.skip_last,
    fixed: dict[str, str] | None = None,
) -> DropPlan:
    """Score the candidate layers and choose what to drop.

    skip_first: leave the first conv layer alone. Its filters have few dimensions (3x3x3 = 27 for
    RGB), so they always look redundant and global ranking would empty it; the authors excluded it.
    fixed: layers the model's graph says must keep every filter, with why (`candidates.fixed_layers`:
    output layers, shared convs). None where the graph is unknown (a bare state dict); then
    skip_last leaves the last conv layer alone, and any conv just before it that no later conv
    reads: in most networks those channels are the outputs (class scores, box coordinates), which
    a drop would delete.
    A conv with one filter per group (depthwise) is never a candidate: each filter is alone in its
    group, so it has nothing to be redundant with (every score is 0).
    """
    check_patterns([layer.name for layer in layers], include, exclude)  # a pattern naming no layer is a typo
    reasons: dict[str, str] = {}
    chosen = {c.key for c in select(layers, include, exclude)}
    for layer in layers:
        if layer.key not in chosen:
            reasons[layer.name] = "not matched by --layers, or matched by --exclude"
    if skip_first and layers:
        reasons.setdefault(
            layers[0].name, "first conv layer (--skip-first): its few-dimensional filters look redundant"
        )
    if fixed is None and skip_last and len(layers) > 1:
        for layer in _output_heads(layers):
            reasons.setdefault(
                layer.name,
                "an output head of a model whose graph is unknown (--skip-last): it is the last conv, or beside it "
                "and no later conv reads its channels",
            )
    for layer in layers:
        if fixed and layer.name in fixed:
            reasons.setdefault(layer.name, fixed[layer.name])
        elif layer.groups > 1 and layer.filters == layer.groups:
            reasons.setdefault(
                layer.name, f"one filter per group (groups={layer.groups}, depthwise): nothing to compare it with"
            )
    candidates = [layer for layer in layers if layer.name not in reasons]
    excluded = [layer.name for layer in layers if layer.name in reasons]
    if not candidates:
        why = "; ".join(f"{n}: {r}" for n, r in list(reasons.items())[:3])
        raise UsageError(f"no conv layer is left to prune ({why}); loosen --layers/--exclude/--skip-first/--skip-last")
    scored = score_layers(candidates)
    drops = choose_drops([s.scores for s in scored], rule, [s.chance for s in scored])
    plan = DropPlan(rule, scored, excluded, {s.layer.name: d for s, d in zip(scored, drops) if len(d)}, reasons)
    _check_plan(plan)
    return plan


def _output_heads(layers: list[ConvLayer]) -> list[ConvLayer]:
    """Without a graph, the likely output layers: the last conv, and the convs just before it whose
    channels no later conv reads (judged by shape: P-Net's face score head beside its box head)."""

    def reads(layer: ConvLayer) -> int:
        return layer.weight.shape[0] if layer.transposed else layer.weight.shape[1] * layer.groups

    heads = []
    for i in range(len(layers) - 1, 0, -1):
        if any(reads(later) == layers[i].filters for later in layers[i + 1 :]):
            break
        heads.append(layers[i])
    return heads


def _check_plan(plan: DropPlan) -> None:
    rule, scores = plan.rule, torch.cat([c.scores for c in plan.candidates])
    if rule.threshold is not None:
        if not (scores > rule.threshold).any():
            raise UsageError(
                f"--threshold {rule.threshold} drops no filter: the highest score is {float(scores.max()):.4f}; lower "
                "it"
            )
        if (scores > rule.threshold).all():
            raise UsageError(
                f"--threshold {rule.threshold} would drop every filter: the lowest score is {float(scores.min()):.4f}; "
                "raise it"
            )
    if plan.total_dropped == 0 and rule.adaptive:
        worst = max(plan.candidates, key=lambda c: _excess_share(c.mean, c.chance))
        raise UsageError(
            f"no filter to drop: no candidate layer is redundant enough (closest: {worst.layer.name}, mean score "
            f"{worst.mean:.4f} against {worst.chance:.4f} for random filters of its shape); give --ratio to drop anyway"
        )
    if plan.total_dropped == 0:
        raise UsageError(
            f"this rule drops no filter out of {plan.total_filters} (ratio too small, or --min-keep too large); raise "
            "--ratio"
        )


def make_rule(ratio: float | None, threshold: float | None, scope: str, min_keep: int) -> DropRule:
    """A DropRule from command-line values; a bad combination is a usage error (exit 2)."""
    if ratio is not None and threshold is not None:
        raise UsageError("--ratio and --threshold are two ways to choose the filters; give one")
    if ratio is None and threshold is None and scope == "global":
        raise UsageError("--scope global ranks the network's filters together by a ratio; give --ratio too")
    try:
        return DropRule(ratio=ratio, threshold=threshold, scope=scope, min_keep=min_keep)
    except ValueError as e:
        text = (
            str(e).replace("ratio must", "--ratio must").replace("min_keep", "--min-keep").replace("scope", "--scope")
        )
        raise UsageError(text) from None
