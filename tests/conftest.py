"""The order in which pytest-xdist workers take the work (`make check`: the tests and, with
``--nbval``, every notebook, in one run of ``--dist loadgroup --no-loadscope-reorder``).

Every notebook nbval checks becomes one xdist group (``nbval:<path>``): its cells run in
order on one worker, in one kernel, as under ``--dist loadscope``. The workers then take
the longest work first (what a worker takes last decides when the run ends): the browser
notebook groups, then the notebooks, then the tests marked ``slow``, then the rest, each in
collection order, so the many short tests fill the end of the run. Without xdist the
collection order is left as it is.
"""

from __future__ import annotations

import pytest

BROWSER_GROUP = "notebooks-browser"


def _rank(item: pytest.Item) -> int:
    if item.path.suffix == ".ipynb":
        return 1
    groups = [str(m.args[0]) for m in item.iter_markers("xdist_group") if m.args]
    if any(g.startswith(BROWSER_GROUP) for g in groups):
        return 0
    return 2 if item.get_closest_marker("slow") else 3


def _group_suffix(item: pytest.Item) -> None:
    """Append ``@group`` to the node id as xdist does, where xdist cannot: pytest 9.2 keeps
    the id in ``_id`` (a NodeId), and xdist 3.8 still writes ``_nodeid``, so every
    ``xdist_group`` mark was silently ignored (pytest-dev/pytest-xdist#1386). Should a fixed
    xdist append the suffix again, ``x@g@g`` still falls in group ``g``."""
    from _pytest.nodeid import NodeId

    names = {str(m.args[0] if m.args else m.kwargs.get("name", "default"))
             for m in item.iter_markers("xdist_group")}  # fmt: skip
    if names and "@" not in item.nodeid:
        item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(sorted(names))}")  # type: ignore[attr-defined]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker
        return
    for item in items:
        if item.path.suffix == ".ipynb":
            name = item.path.relative_to(config.rootpath).as_posix()
            item.add_marker(pytest.mark.xdist_group(f"nbval:{name}"))
        if config.getvalue("loadgroup") and hasattr(item, "_id"):
            _group_suffix(item)
    items.sort(key=_rank)  # stable: collection order within a rank
