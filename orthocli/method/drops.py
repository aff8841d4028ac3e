"""Choosing which filters to drop (the method's step 3, "drop"; docs/method.md), shared by `orthocli
prune`, `orthocli train` and `RePr`: the options of a `config.ReprConfig` say how many
(`drop_counts`: the drop rule) and which (its ranking, `orthocli.method.ranking`); `choose_drops` turns
scores into indices (pure); `plan_drops` scores the candidate layers and returns a DropPlan.

The drop rule. With neither a ratio nor a threshold (the default) it is adaptive: each layer drops
the share of its filters by which its mean score exceeds that of random filters of its shape,
J * (1 - chance/mean) rounded down, at most ADAPTIVE_CAP of the layer; a layer no more redundant
than chance drops nothing, so the drops follow the redundancy the network has and stop once the
method has removed it. A ratio drops that fraction of the candidate filters instead (cut by count,
so ties never change it; rounded down but at least one filter: 10% of an 8-filter layer drops 1);
a threshold every filter scoring above it. Scope "layer" counts each layer by itself; "global"
ranks all candidate filters of the network together by a ratio (the authors' choice). min_keep:
filters every layer keeps, whatever the rule says.

Matched counts. `counts` (layer -> how many) replaces the rule: the layer drops exactly that many,
chosen by the ranking. A control that asks whether the ranking matters drops, cycle by cycle, the
counts the method run dropped (`RePr(counts=...)`, `orthocli train --control random`): with the
adaptive rule its own network's scores would give other counts after the first cycle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from orthocli.config import ADAPTIVE_CAP, ReprConfig
from orthocli.errors import OptionError, UsageError, render_options
from orthocli.method.layer_scores import LayerScores, score_layers
from orthocli.method.ranking import BY_NAME, GATHERED, LayerFacts, Ranking, needs, no_data_message, ranking_name
from orthocli.network.layer_patterns import check as check_patterns
from orthocli.network.layers import ConvLayer, select
from orthocli.seeding import sub_seed


def _ranked(scores: Sequence[torch.Tensor], layers: Sequence[int]) -> list[tuple[float, int, int]]:
    """(score, layer, filter) from most to least redundant; ties break by layer, then filter."""
    items = [(-s, li, f) for li in layers for f, s in enumerate(scores[li].tolist())]
    items.sort()
    return [(-neg, li, f) for neg, li, f in items]


def drop_counts(scores: Sequence[torch.Tensor], config: ReprConfig, chance: Sequence[float] | None = None) -> list[int]:
    """How many filters each layer drops by `config`'s rule (its ratio / threshold / adaptive
    share, scope and min_keep). chance: each layer's score for random filters
    (`LayerScores.chance`), needed by the adaptive rule."""
    if config.adaptive and (chance is None or len(chance) != len(scores)):
        raise ValueError("an adaptive rule needs each layer's chance score")
    sizes = [len(s) for s in scores]
    room = [max(0, n - config.min_keep) for n in sizes]  # most each layer may lose
    counts = [0] * len(scores)

    def take(candidates: list[tuple[float, int, int]], quota: int | None) -> None:
        for s, li, _ in candidates:
            if quota is not None and quota <= 0:
                break
            if config.threshold is not None and not s > config.threshold:
                break
            if counts[li] < room[li]:
                counts[li] += 1
                if quota is not None:
                    quota -= 1

    if config.scope == "global":
        quota = None if config.ratio is None else _quota(config.ratio, sum(sizes))
        take(_ranked(scores, range(len(scores))), quota)
    else:
        for li, n in enumerate(sizes):
            if config.adaptive:
                quota = excess_quota(float(scores[li].mean()) if n else 0.0, chance[li], n)
            else:
                quota = None if config.ratio is None else _quota(config.ratio, n)
            take(_ranked(scores, [li]), quota)
    return counts


def choose_drops(
    scores: Sequence[torch.Tensor],
    config: ReprConfig,
    chance: Sequence[float] | None = None,
    *,
    seed: int = 0,
    ranking: Ranking | None = None,
    counts: Sequence[int] | None = None,
    layers: Sequence[ConvLayer] | None = None,
    bn_scales: Mapping[str, torch.Tensor | None] | None = None,
    stats: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
) -> list[torch.Tensor]:
    """Indices (sorted, int64) of the filters to drop in each layer, one tensor per layer: as many
    as `drop_counts` says (or `counts`, one per layer, matched to another run's), the first ones of
    the ranking's order (`ranking`, else the one `config.ranking` names). seed: this cycle's ranking
    seed (`seeding.ranking_seed`); layer i draws from sub-seed i of it. What the ranking reads
    besides the scores (`ranking.LayerFacts`): `layers` (the scored conv layers, for their names and
    weights), `bn_scales` and `stats` (layer name -> the following BatchNorm's scale; the gathered
    statistics)."""
    rank = ranking if ranking is not None else BY_NAME[config.ranking]
    if counts is not None and len(counts) != len(scores):
        raise ValueError(f"counts has {len(counts)} entries for {len(scores)} layers")
    out = []
    for li, count in enumerate(drop_counts(scores, config, chance) if counts is None else counts):
        if count:
            order = rank.order(_facts(li, scores[li], seed, layers, bn_scales, stats))
        else:
            order = torch.zeros(0, dtype=torch.long)
        out.append(torch.sort(order[:count].to(torch.long)).values)
    return out


def _facts(li, scores, seed, layers, bn_scales, stats) -> LayerFacts:
    """What a ranking knows of layer `li` (`ranking.LayerFacts`)."""
    layer = None if layers is None else layers[li]
    name = f"layer {li}" if layer is None else layer.name
    weight = torch.zeros(len(scores), 0) if layer is None else layer.weight
    return LayerFacts(
        name=name,
        scores=scores,
        weight=weight,
        generator=torch.Generator().manual_seed(sub_seed(seed, 0, li)),
        bn_scale=(bn_scales or {}).get(name),
        stats=dict((stats or {}).get(name) or {}),
        transposed=bool(layer is not None and layer.transposed),
    )


def _quota(ratio: float, filters: int) -> int:
    # At least one: a small ratio of a narrow layer would otherwise drop nothing, and the method,
    # silently, would not run at all (`min_keep` still has the last word).
    return max(1, math.floor(ratio * filters + 1e-9))


def _excess_share(mean: float, chance: float) -> float:
    """The share of a layer by which its mean score exceeds chance; 0 or less at or below it (a
    layer of one filter scores 0 against a chance of 0)."""
    return 1 - chance / mean if mean > 0 else -math.inf


def excess_quota(mean: float, chance: float, filters: int) -> int:
    """What the adaptive rule drops of a layer of `filters` filters whose mean score is `mean`
    against `chance` for random filters (before `min_keep`)."""
    # None at or below chance, and never more than the cap: filters of many weights lie far above
    # chance without being copies.
    share = _excess_share(mean, chance)
    return math.floor(filters * min(share, ADAPTIVE_CAP) + 1e-9) if share > 0 else 0


@dataclass
class DropPlan:
    rule: ReprConfig  # the options the drops were chosen by (`rule.rule_dict()`: the drop rule alone)
    candidates: list[LayerScores]  # scored layers that may lose filters, network order
    excluded: list[str]  # conv layers left alone, network order
    drops: dict[str, torch.Tensor]  # layer name -> dropped filter indices (sorted)
    # excluded layer -> why, naming options as `{field}` (`reasons` renders them)
    why: dict[str, str] = field(default_factory=dict)

    @property
    def reasons(self) -> dict[str, str]:
        """Excluded layer -> why, in the library's words."""
        return {n: render_options(r, str) for n, r in self.why.items()}

    @property
    def total_filters(self) -> int:
        return sum(c.layer.filters for c in self.candidates)

    @property
    def total_dropped(self) -> int:
        return sum(len(d) for d in self.drops.values())

    def rule_dict(self) -> dict:
        return self.rule.rule_dict()

    def to_json(self, name=str) -> dict:
        """The plan as plain values; `name` renders option names (the CLI passes its flags)."""
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
            "left_out": [{"name": n, "reason": render_options(self.why.get(n, ""), name)} for n in self.excluded],
            "total": {"filters": self.total_filters, "dropped": self.total_dropped},
        }


def candidate_layers(
    layers: list[ConvLayer], config: ReprConfig, *, fixed: dict[str, str] | None = None
) -> tuple[list[ConvLayer], dict[str, str]]:
    """The conv layers `config`'s layer choice lets lose filters (network order), and each layer
    left alone with why, naming options as `{field}` (see `plan_drops`). Scores nothing. A pattern
    that names no layer is an OptionError: a typo, not a choice."""
    check_patterns([layer.name for layer in layers], config.layers, config.exclude)
    why: dict[str, str] = {}
    chosen = {c.key for c in select(layers, config.layers or None, config.exclude or None)}
    for layer in layers:
        if layer.key not in chosen:
            why[layer.name] = "not matched by {layers}, or matched by {exclude}"
    if config.skip_first and layers:
        why.setdefault(layers[0].name, "first conv layer ({skip_first}): its few-dimensional filters look redundant")
    if fixed is None and config.skip_last and len(layers) > 1:
        for layer in _output_heads(layers):
            why.setdefault(
                layer.name,
                "an output head of a model whose graph is unknown ({skip_last}): it is the last conv, or beside it "
                "and no later conv reads its channels",
            )
    for layer in layers:
        if fixed and layer.name in fixed:
            why.setdefault(layer.name, fixed[layer.name])
        elif layer.groups > 1 and layer.filters == layer.groups:
            why.setdefault(
                layer.name, f"one filter per group (groups={layer.groups}, depthwise): nothing to compare it with"
            )
    return [layer for layer in layers if layer.name not in why], why


def plan_drops(
    layers: list[ConvLayer],
    config: ReprConfig,
    *,
    fixed: dict[str, str] | None = None,
    seed: int = 0,
    counts: Mapping[str, int] | None = None,
    ranking: Ranking | None = None,
    bn_scales: Mapping[str, torch.Tensor | None] | None = None,
    stats: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
) -> DropPlan:
    """Score the candidate layers and choose what to drop, by `config`'s rule, ranking and layer
    choice (`layers`, `exclude`, `skip_first`, `skip_last`).

    skip_first leaves the first conv layer alone: its filters have few dimensions (3x3x3 = 27 for
    RGB), so they always look redundant and global ranking would empty it; the authors excluded it.
    fixed: layers the model's graph says must keep every filter, with why (`graph.ModelGraph.
    fixed_layers`: output layers, shared convs). None where the graph is unknown (a bare state dict);
    then skip_last leaves the last conv layer alone, and any conv just before it that no later conv
    reads: in most networks those channels are the outputs (class scores, box coordinates), which a
    drop would delete. A conv with one filter per group (depthwise) is never a candidate: each
    filter is alone in its group, so it has nothing to be redundant with (every score is 0).
    seed: the ranking's seed for this choice (a random ranking's draw). A rule that drops nothing
    is an OptionError (a training cycle catches it and trains the whole network).
    counts: layer name -> how many filters it drops, instead of the rule (matched to another run;
    a candidate not named drops none, and dropping nothing is no error); UsageError for a layer
    that is not a candidate or a count above what the layer may lose (`min_keep`).
    ranking: a `Ranking` object instead of the one `config.ranking` names; bn_scales, stats: what
    it may read besides scores and weights (`choose_drops`). A ranking that needs gathered
    statistics, given none, is a UsageError naming it (`prune` has no training batches).
    """
    rank = ranking if ranking is not None else BY_NAME[config.ranking]
    missing = sorted(needs(rank) & set(GATHERED))
    if missing and stats is None:
        raise UsageError(no_data_message(ranking_name(rank), "a checkpoint without training"))
    candidates, why = candidate_layers(layers, config, fixed=fixed)
    excluded = [layer.name for layer in layers if layer.name in why]
    if not candidates:
        reasons = "; ".join(f"{n}: {r}" for n, r in list(why.items())[:3])
        raise OptionError(
            f"no conv layer is left to prune ({reasons}); loosen {{layers}}/{{exclude}}/{{skip_first}}/{{skip_last}}"
        )
    scored = score_layers(candidates)
    matched = None if counts is None else _matched(counts, candidates, config.min_keep)
    drops = choose_drops(
        [s.scores for s in scored],
        config,
        [s.chance for s in scored],
        seed=seed,
        counts=matched,
        ranking=ranking,
        layers=[s.layer for s in scored],
        bn_scales=bn_scales,
        stats=stats,
    )
    plan = DropPlan(config, scored, excluded, {s.layer.name: d for s, d in zip(scored, drops) if len(d)}, why)
    if counts is None:  # matched counts are another run's: they may be zero, and say nothing of a threshold
        _check_plan(plan)
    return plan


def _matched(counts: Mapping[str, int], candidates: list[ConvLayer], min_keep: int) -> list[int]:
    """The matched counts in candidate order; UsageError for a count no candidate can take."""
    names = {layer.name: layer for layer in candidates}
    unknown = sorted(set(counts) - set(names))
    if unknown:
        raise UsageError(
            f"matched counts name {', '.join(unknown)}, which may not lose filters here (candidates:"
            f" {', '.join(names)}); the two runs must have the same model and layer options"
        )
    for name, n in counts.items():
        room = max(0, names[name].filters - min_keep)
        if not 0 <= n <= room:
            raise UsageError(f"matched count {n} for {name}: it may lose 0 to {room} of its {names[name].filters}")
    return [int(counts.get(layer.name, 0)) for layer in candidates]


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
            raise OptionError(
                f"{{threshold}} {rule.threshold} drops no filter: the highest score is {float(scores.max()):.4f};"
                " lower it"
            )
        if (scores > rule.threshold).all():
            raise OptionError(
                f"{{threshold}} {rule.threshold} would drop every filter: the lowest score is"
                f" {float(scores.min()):.4f}; raise it"
            )
    if plan.total_dropped == 0 and rule.adaptive:
        worst = max(plan.candidates, key=lambda c: _excess_share(c.mean, c.chance))
        raise OptionError(
            f"no filter to drop: no candidate layer is redundant enough (closest: {worst.layer.name}, mean score "
            f"{worst.mean:.4f} against {worst.chance:.4f} for random filters of its shape); give {{ratio}} to drop"
            " anyway"
        )
    if plan.total_dropped == 0:
        raise OptionError(
            f"this rule drops no filter out of {plan.total_filters} (ratio too small, or {{min_keep}} too large);"
            " raise {ratio}"
        )
