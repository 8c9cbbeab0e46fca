"""A stepped ramp, a load shape: add it to the locustfile on the command line.

    locust -f loadtests/locustfile.py,loadtests/locust_ramp.py --headless \\
        -u 1000 -r 100 -t 5m --hosts ... [--ramp-step 100] [--step-seconds 30]

Adds --ramp-step users (at -r a second) every --step-seconds until -u, then stays there
until -t: each step is a plateau long enough to read its latency, which is how a knee in
latency against load shows (loadtests/report.py plots it from Locust's CSV history).
"""

from __future__ import annotations

from typing import Any

from locust import LoadTestShape, events
from locust.argument_parser import LocustArgumentParser


@events.init_command_line_parser.add_listener
def _options(parser: LocustArgumentParser) -> None:
    parser.add_argument("--ramp-step", type=int, default=100, help="Users added per step")
    parser.add_argument("--step-seconds", type=float, default=30.0, help="Length of a step")


class Ramp(LoadTestShape):
    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        options: Any = self.runner.environment.parsed_options
        elapsed = self.get_run_time()
        if options.run_time and elapsed > options.run_time:
            return None
        step = int(elapsed // options.step_seconds) + 1
        return min(options.num_users, step * options.ramp_step), float(options.spawn_rate)
