"""Processes sharing cores: the engine under the stage model, against hand-computed times."""

import pytest

from rtsim.sim.cpu_share import SharedCores


def _run(processes: int, cores: int, jobs: list[tuple[int, float, float]], **kw: int) -> dict:
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
