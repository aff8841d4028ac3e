"""The verdict line of `train --seeds N` (`orthocli.training.verdicts`): each wording rule, from the sign of
each 95% interval, on made-up paired statistics."""

from __future__ import annotations

import pytest

from orthocli.training.stats import paired
from orthocli.training.verdicts import verdict

CONTROL = [0.90, 0.91, 0.92, 0.93, 0.94]


def shifted(*diffs: float):
    """RePr (or any first arm) minus the control by these differences, seed by seed."""
    return paired([c + d for c, d in zip(CONTROL, diffs)], CONTROL[: len(diffs)])


GAIN = shifted(0.010, 0.012, 0.008, 0.011, 0.009)  # +1.00 points, interval above 0
LOSS = shifted(-0.010, -0.012, -0.008, -0.011, -0.009)
NONE = shifted(0.010, -0.012, 0.008, -0.011, 0.004)  # around 0


def test_the_method_alone_helps_hurts_or_shows_nothing():
    assert verdict(GAIN) == (
        "RePr gains +1.00 [+0.80, +1.20] points of test accuracy (5/5 seeds) over the control: the method helps on"
        " this data."
    )
    assert verdict(LOSS).endswith(
        "-1.00 [-1.20, -0.80] points of test accuracy (0/5 seeds): the method hurts on this data."
    )
    assert verdict(NONE, metric="val accuracy").startswith("RePr against the control: -0.02 [")
    assert verdict(NONE).endswith(
        "points of test accuracy (3/5 seeds), no evidence that it helps or hurts on this data."
    )


def test_the_ranking_matters_hurts_or_shows_nothing():
    above = verdict(GAIN, random=NONE, ranking=GAIN)
    assert above.endswith(
        "; the ranking adds +1.00 [+0.80, +1.20] points (5/5 seeds) over random drops: the choice of"
        " filters matters here."
    )
    below = verdict(NONE, random=GAIN, ranking=LOSS)
    assert below.endswith(
        "; the ranking against random drops: -1.00 [-1.20, -0.80] points (0/5 seeds): random filters do better here."
    )


@pytest.mark.parametrize(
    "method,random,tail",
    [
        (GAIN, GAIN, ", so the gain over the control comes from dropping and re-introducing any filters."),
        (
            NONE,
            GAIN,
            ", and random drops gain +1.00 [+0.80, +1.20] points (5/5 seeds) over the control: dropping and"
            " re-introducing any filters helps.",
        ),
        (NONE, NONE, "no evidence that the ranking matters here."),
        (LOSS, LOSS, "no evidence that the ranking matters here."),
    ],
)
def test_no_evidence_for_the_ranking_says_where_any_gain_comes_from(method, random, tail):
    line = verdict(method, random=random, ranking=NONE)
    assert "; the ranking adds -0.02 [" in line and "points (3/5 seeds) over random drops: no evidence that the" in line
    assert line.endswith(tail)


def test_one_seed_gives_no_interval():
    one = paired([0.93], [0.92])
    assert verdict(one, ranking=one) == (
        "RePr against the control on one seed: +1.00 points of test accuracy (1/1 seeds); the ranking against random"
        " drops: +1.00 points (1/1 seeds). One seed gives no interval: run --seeds 10 or more."
    )


def test_nothing_dropped_means_nothing_to_remove():
    line = verdict(NONE, random=NONE, ranking=NONE, dropped_nothing=True)
    assert line.startswith("RePr dropped no filter in any seed: no candidate layer was redundant enough")
    assert "so did the random-drop arm" in line and line.endswith("give --ratio to drop anyway.")
    assert "random-drop" not in verdict(NONE, dropped_nothing=True)
    assert verdict(None) == "No seed finished both the RePr run and the control: no verdict."
