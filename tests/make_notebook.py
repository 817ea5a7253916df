"""Write a notebook fixture from cells separated by ``# %%`` lines: ``python tests/make_notebook.py
src.py out.ipynb``. Fixtures are kept as notebooks because that is where most keras code lives."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cells_of(text: str) -> list[str]:
    cells, current = [], []
    for line in text.splitlines():
        if line.strip() == "# %%":
            cells.append("\n".join(current).strip("\n"))
            current = []
        else:
            current.append(line)
    cells.append("\n".join(current).strip("\n"))
    return [c for c in cells if c]


def notebook(cells: list[str]) -> dict:
    def cell(source: str) -> dict:
        lines = source.splitlines(keepends=True)
        return {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": lines,
        }

    return {
        "cells": [cell(c) for c in cells],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    target.write_text(json.dumps(notebook(cells_of(source.read_text())), indent=1) + "\n")
