"""Reading the machine: its busy time covers the CPU of the processes on it."""

import time

from rtsim.live.process import machine_busy_s


def test_machine_busy_time_covers_this_process_cpu() -> None:
    b0, c0 = machine_busy_s(), time.process_time()
    spins = 0
    while time.process_time() - c0 < 0.3:
        spins += 1
    b1, c1 = machine_busy_s(), time.process_time()
    assert b0 is not None and b1 is not None and spins > 0
    # Every core's busy ticks include this process's 0.3 s (sampled: a few ticks off).
    assert b1 - b0 >= (c1 - c0) - 0.05
