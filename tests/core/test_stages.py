"""Stage arithmetic on measured records: the publisher's timer residual."""

import numpy as np

from rtsim.core.stages import timer_residual


def test_timer_residual_finds_when_the_publisher_went_to_sleep() -> None:
    # A publisher at 137 msgs/s: it stamps ``sent``, works 0.3 ms, sleeps a whole number
    # of ms (epoll), then wakes 0.05-0.25 ms late. The residual must be that wake-up.
    rng = np.random.default_rng(7)
    m, interval, work = 400, 1e3 / 137, 0.3
    due = np.arange(m) * interval
    wake = rng.uniform(0.05, 0.25, m)
    sent = np.zeros(m)
    sent[0] = due[0] + wake[0]
    for k in range(1, m):
        start = sent[k - 1] + work
        d = due[k] - start
        sent[k] = start + (np.ceil(d) if d > 0 else 0.0) + wake[k]
    timer = sent - due
    r, w = timer_residual(timer, due, sent, np.ones(m - 1, dtype=bool))
    assert abs(w - work) <= 0.02
    assert abs(np.median(r) - 0.15) < 0.02
    assert np.percentile(r, 95) < 0.3  # no sleep mistaken for a whole ms shorter
    # Taking the sleep to begin at the stamp (no work) would bias it up: the old estimate.
    d0 = due[1:] - sent[:-1]
    naive = np.maximum(timer[1:] - (np.ceil(d0) - d0), 0.0)
    assert np.mean(naive) - np.mean(r) > 0.1
