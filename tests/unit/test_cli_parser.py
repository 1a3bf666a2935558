"""The CLI's parser, which is built without importing what the commands run."""

from __future__ import annotations

import argparse

from graphs.chaos import SCENARIOS
from graphs.cli import _parser
from graphs.foreign_scenarios import FOREIGN_CHAOS


def test_chaos_offers_every_scenario_and_a_failure_share() -> None:
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    chaos = sub.choices["chaos"]
    [scenario] = [a for a in chaos._actions if a.dest == "scenario"]
    assert scenario.choices is not None
    assert set(scenario.choices) == {*SCENARIOS, *FOREIGN_CHAOS}
    args = parser.parse_args(["chaos", "carrier-flaky", "--fail-rate", "0.5"])
    assert args.fail_rate == 0.5
