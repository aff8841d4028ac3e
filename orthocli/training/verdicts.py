"""What `orthocli train --baseline --seeds N` found, in one plain line: does the method help on this
data, and, with the random-drop arm, is it the ranking or only the dropping and re-introducing?

The rules, from the 95% interval of each paired difference (`stats.Paired`):

- RePr against the control: above 0 "the method helps on this data", below 0 "the method hurts on
  this data", around 0 "no evidence that it helps or hurts on this data".
- RePr against random drops (the ranking): above 0 "the choice of filters matters here", below 0
  "random filters do better here", around 0 "no evidence that the ranking matters here", followed,
  where RePr or the random arm gains over the control with its interval above 0, by where that
  gain comes from: dropping and re-introducing any filters.
- One seed gives no interval: the line says so and asks for more seeds.
- When the method dropped no filter in any seed (no candidate layer redundant enough for the
  drop rule) it trained as the control did: the line says there was nothing to remove.

Pure: numbers in, a sentence out.
"""

from __future__ import annotations

from orthocli.training.stats import Paired


def _points(p: Paired, metric: str | None = None) -> str:
    """ "+0.57 [+0.07, +1.07] points (7/10 seeds)": the mean difference, its interval, the wins."""
    ci = "" if p.ci_low is None else f" [{100 * p.ci_low:+.2f}, {100 * p.ci_high:+.2f}]"
    of = f" of {metric}" if metric else ""
    return f"{100 * p.mean_difference:+.2f}{ci} points{of} ({p.wins}/{p.n} seeds)"


points = _points  # other verdict sentences (criteria_summary.py) word their numbers alike


def _above(p: Paired | None) -> bool:
    return p is not None and p.ci_low is not None and p.ci_low > 0


def _below(p: Paired | None) -> bool:
    return p is not None and p.ci_high is not None and p.ci_high < 0


def verdict(
    method: Paired | None,
    *,
    random: Paired | None = None,
    ranking: Paired | None = None,
    metric: str = "test accuracy",
    dropped_nothing: bool = False,
) -> str:
    """One line. `method`: RePr against the control; `random`: the random arm against the control;
    `ranking`: RePr against the random arm (differences are the first minus the second, in
    accuracy fractions); `dropped_nothing`: no method run dropped a filter."""
    if dropped_nothing:
        also = "; so did the random-drop arm, which drops as many" if random is not None or ranking is not None else ""
        return (
            "RePr dropped no filter in any seed: no candidate layer was redundant enough for the drop rule, so it"
            f" trained as the control did{also}. Nothing to remove in this model; give --ratio to drop anyway."
        )
    if method is None:
        return "No seed finished both the RePr run and the control: no verdict."
    if method.ci_low is None:
        line = f"RePr against the control on one seed: {_points(method, metric)}"
        if ranking is not None:
            line += f"; the ranking against random drops: {_points(ranking)}"
        return line + ". One seed gives no interval: run --seeds 10 or more."
    if _above(method):
        line = f"RePr gains {_points(method, metric)} over the control: the method helps on this data"
    elif _below(method):
        line = f"RePr against the control: {_points(method, metric)}: the method hurts on this data"
    else:
        line = f"RePr against the control: {_points(method, metric)}, no evidence that it helps or hurts on this data"
    if ranking is None or ranking.ci_low is None:
        return line + "."
    if _above(ranking):
        return line + f"; the ranking adds {_points(ranking)} over random drops: the choice of filters matters here."
    if _below(ranking):
        return line + f"; the ranking against random drops: {_points(ranking)}: random filters do better here."
    line += f"; the ranking adds {_points(ranking)} over random drops: no evidence that the ranking matters here"
    if _above(method):
        line += ", so the gain over the control comes from dropping and re-introducing any filters"
    elif _above(random):
        line += (
            f", and random drops gain {_points(random)} over the control: dropping and re-introducing any filters helps"
        )
    return line + "."
