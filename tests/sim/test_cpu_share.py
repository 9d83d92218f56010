"""Processes sharing cores: the engine under the stage model, against hand-computed times."""

import pytest

from rtsim.sim.cpu_share import SharedCores


def _run(processes: int, cores: float, jobs: list[tuple[int, float, float]], **kw: int) -> dict:
    eng = SharedCores(processes, cores, **kw)
    done: dict[int, float] = {}
    for i, (p, ready, work) in enumerate(jobs):
        eng.submit(p, ready, work, lambda t, i=i: done.__setitem__(i, t))
    eng.run()
    return done


def test_one_core_two_busy_processes_each_get_half() -> None:
    done = _run(2, 1, [(0, 0.0, 1.0), (1, 0.0, 1.0)])
    assert done[0] == pytest.approx(2.0) and done[1] == pytest.approx(2.0)


def test_enough_cores_no_slowdown_and_fifo_per_process() -> None:
    done = _run(2, 2, [(0, 0.0, 1.0), (0, 0.0, 1.0), (1, 0.5, 1.0)])
    assert done[0] == pytest.approx(1.0)
    assert done[1] == pytest.approx(2.0)  # waited for the first job of its process
    assert done[2] == pytest.approx(1.5)


def test_three_processes_on_two_cores_and_a_dedicated_one() -> None:
    shared = _run(3, 2, [(0, 0.0, 1.0), (1, 0.0, 1.0), (2, 0.0, 1.0)])
    assert all(t == pytest.approx(1.5) for t in shared.values())
    ded = _run(3, 2, [(0, 0.0, 1.0), (1, 0.0, 1.0), (2, 0.0, 1.0)], dedicated=0)
    assert ded[0] == pytest.approx(1.0)  # the server keeps its core
    assert ded[1] == pytest.approx(1.5) and ded[2] == pytest.approx(1.5)  # 0.5 each, then 1


def test_idle_and_bad_sizes() -> None:
    eng = SharedCores(2, 1)
    assert eng.idle(0, 0.0) and eng.free_core()
    with pytest.raises(ValueError):
        SharedCores(0, 1)
    with pytest.raises(ValueError, match="cores > 0"):
        SharedCores(2, 0.0)


def test_a_fraction_of_the_machine() -> None:
    """By hand: 0.6 of a core left by other work. Two busy processes run at 0.3 each: a
    0.3 s job ends at 1.0; the other's 0.6 s job has 0.3 s left, now alone at 0.6: +0.5."""
    done = _run(2, 0.6, [(0, 0.0, 0.3), (1, 0.0, 0.6)])
    assert done[0] == pytest.approx(1.0) and done[1] == pytest.approx(1.5)
    # 1.5 cores and a dedicated process: it keeps a whole core, the others share 0.5.
    ded = _run(3, 1.5, [(0, 0.0, 1.0), (1, 0.0, 0.25), (2, 0.0, 0.25)], dedicated=0)
    assert ded[0] == pytest.approx(1.0) and ded[1] == pytest.approx(1.0)
