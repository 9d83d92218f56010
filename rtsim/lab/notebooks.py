"""The notebook map: every notebook in ``notebooks/`` with its title, read from the files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

__all__ = ["notebook_map"]


def notebook_map(folder: str | Path = ".") -> pd.DataFrame:
    """One row per ``NN-*.ipynb`` in ``folder``: file and the first heading of the notebook."""
    rows = []
    for path in sorted(Path(folder).glob("[0-9][0-9]-*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        title = ""
        for cell in nb.get("cells", []):
            if cell.get("cell_type") == "markdown":
                src = "".join(cell.get("source", []))
                for line in src.splitlines():
                    if line.startswith("#"):
                        title = line.lstrip("#").strip()
                        break
            if title:
                break
        rows.append({"notebook": path.name, "title": title})
    return pd.DataFrame(rows, columns=["notebook", "title"])
