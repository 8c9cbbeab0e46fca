"""The on-sale spike, a load shape: add it to the locustfile on the command line.

    locust -f loadtests/locustfile.py,loadtests/locust_onsale.py --headless \\
        -u 1000 -r 200 -t 2m --hosts ... [--quiet-seconds 20] [--quiet-users 50]

A quiet room first: for --quiet-seconds only --quiet-users watchers and kiosks are on the
show, which the run created SCHEDULED. Then the sale opens (the show goes ON_SALE) and
everyone else arrives at -r users a second (1,000 at -r 200: five seconds), buyers and
admins among them, until -t has passed since the start.
"""

from __future__ import annotations

from typing import Any

from locust import LoadTestShape, events
from locust.argument_parser import LocustArgumentParser
from locust_run import open_sale

EARLY = ("Watcher", "Kiosk")  # the user classes in the room before the sale opens


@events.init_command_line_parser.add_listener
def _options(parser: LocustArgumentParser) -> None:
    parser.add_argument("--quiet-seconds", type=float, default=20.0, help="Before the sale opens")
    parser.add_argument("--quiet-users", type=int, default=50, help="Watchers before the sale")


class OnSale(LoadTestShape):
    use_common_options = True
    opens_sale = True  # the run creates its show SCHEDULED; this shape opens it

    def __init__(self) -> None:
        super().__init__()
        self.opened = False

    def reset_time(self) -> None:
        super().reset_time()
        self.opened = False

    def tick(self) -> tuple[int, float] | tuple[int, float, Any] | None:
        assert self.runner is not None
        options: Any = self.runner.environment.parsed_options
        elapsed = self.get_run_time()
        if options.run_time and elapsed > options.run_time:
            return None
        if elapsed < options.quiet_seconds:
            quiet = min(options.quiet_users, options.num_users)
            early = [c for c in self.runner.user_classes if c.__name__ in EARLY]
            return quiet, float(quiet), early
        if not self.opened:
            open_sale(self.runner.environment)
            self.opened = True
        return options.num_users, float(options.spawn_rate), list(self.runner.user_classes)
