"""Helpers shared by the simulator tests (imported by name: tests are not a package)."""

#: A fixed meter time at start: Wednesday 2024-06-12 10:07:30 UTC (sunny, T1).
START = 1718186850.0


class FakeMonotonic:
    """A monotonic clock the test moves by hand (no sleeping, no timing assumptions)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def base_url(meter) -> str:
    return f"http://{meter.host}:{meter.http_port}"


def control_url(fleet) -> str:
    return f"http://127.0.0.1:{fleet.control_port}/_sim/meters"
