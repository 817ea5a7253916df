"""Files trainlint cannot analyze: each is one error line naming the file and the reason, the
run exits 2, and every other file is still analyzed and its findings reported."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import trainlint.cli.check
from trainlint import safeio, sources
from trainlint.cli import main
from trainlint.discovery import Discovery

GOOD = "def train(optimizer):\n    optimizer.zero_grad\n"  # the good file's TL405 on line 2
#: Mentions `.step`, so the prefilter lets it through to the parser.
TRAINING = "optimizer.step()\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "good.py").write_text(GOOD)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


def run_json(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        main, ["check", "--no-cache", "--jobs", "1", "--format", "json", *args]
    )
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout)


def run_text(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", "--no-cache", "--jobs", "1", *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def assert_reported(name: str, reason: str, line: int | None = None) -> None:
    """``name`` is an error naming it and ``reason``; good.py is still analyzed."""
    status, document = run_json(".")
    assert status == 2
    assert [(f["path"], f["code"], f["line"]) for f in document["findings"]] == [
        ("good.py", "TL405", 2)
    ]
    (error,) = document["errors"]
    assert error["path"] == name and reason in error["message"], error
    if line is not None:
        assert error["line"] == line
    status, text = run_text(".")
    assert status == 2 and "good.py:2:5: TL405" in text
    (error_line,) = [row for row in text.splitlines() if row.startswith(name) and reason in row]
    assert "error" in error_line


# ----------------------------------------------------------------------------- unreadable content
def test_syntax_error(project: Path) -> None:
    (project / "broken.py").write_text(TRAINING + "def broken(:\n    pass\n")
    assert_reported("broken.py", "syntax error", line=2)


def test_undecodable_bytes(project: Path) -> None:
    (project / "latin.py").write_bytes(TRAINING.encode() + b"name = 'caf\xe9'\n")
    assert_reported("latin.py", "cannot decode as utf-8 (byte 0xe9 at offset 28)", line=2)


def test_binary_file(project: Path) -> None:
    (project / "blob.py").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00" + TRAINING.encode())
    assert_reported("blob.py", "binary file (contains NUL bytes), not Python source")


def test_unknown_encoding_declaration_is_read_as_utf8_with_a_note(project: Path) -> None:
    """Codecs registered at run time (future_fstrings): Python tools read such files as UTF-8."""
    (project / "odd.py").write_text("# -*- coding: future_fstrings -*-\n" + GOOD)
    status, document = run_json(".")
    assert status == 1 and document["errors"] == []
    assert [(f["path"], f["line"]) for f in document["findings"]] == [
        ("good.py", 2),
        ("odd.py", 3),
    ]
    (note,) = document["notes"]
    assert note["path"] == "odd.py" and "'future_fstrings'" in note["message"]
    status, text = run_text(".")
    assert "odd.py: note: unknown encoding 'future_fstrings'" in text


def test_undecodable_first_line_without_a_cookie(project: Path) -> None:
    (project / "latin.py").write_bytes(b"x = 'caf\xe9'\n" + TRAINING.encode())
    assert_reported("latin.py", "cannot decode as utf-8 (byte 0xe9 at offset 8)", line=1)


def test_bom_contradicting_the_cookie(project: Path) -> None:
    (project / "bom.py").write_bytes(b"\xef\xbb\xbf# coding: latin-1\n" + TRAINING.encode())
    assert_reported("bom.py", "bad encoding declaration", line=1)


def test_empty_file_is_fine(project: Path) -> None:
    (project / "empty.py").write_bytes(b"")
    (project / "blank.py").write_text("\n\n   \n")
    status, document = run_json(".")
    assert status == 1 and document["errors"] == []
    assert [f["path"] for f in document["findings"]] == ["good.py"]
    assert run_json("empty.py")[0] == 0


# ----------------------------------------------------------------------------- encodings that work
@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("cookie_latin1.py", b"# -*- coding: latin-1 -*-\nname = 'caf\xe9'\nopt.zero_grad\n"),
        ("cookie_vim.py", b"# vim: set fileencoding=iso-8859-15 :\nx = '\xa4'\nopt.zero_grad\n"),
        ("bom.py", b"\xef\xbb\xbfname = 'caf\xc3\xa9'\nx = 1\nopt.zero_grad\n"),
        ("bom_and_cookie.py", b"\xef\xbb\xbf# coding: utf-8\nx = 1\nopt.zero_grad\n"),
        ("cp1252.py", b"#!/usr/bin/env python\n# coding=cp1252\nopt.zero_grad  # \x93q\x94\n"),
        ("crlf.py", b"x = 1\r\n\r\nopt.zero_grad\r\n"),
        ("form_feed.py", b"x = 1\n\x0c\nopt.zero_grad\n"),
    ],
)
def test_declared_encodings_and_line_endings(project: Path, name: str, raw: bytes) -> None:
    (project / name).write_bytes(raw)
    status, document = run_json(name)
    assert status == 1 and document["errors"] == []
    assert [(f["code"], f["line"]) for f in document["findings"]] == [("TL405", 3)]


def test_decode_python_strips_the_bom() -> None:
    assert sources.decode_python(b"\xef\xbb\xbfx = 1\n") == "x = 1\n"
    assert (
        sources.decode_python(b"# coding: latin-1\nx = '\xe9'\n") == "# coding: latin-1\nx = 'é'\n"
    )


# ----------------------------------------------------------------------------- size
def test_50k_line_file_is_analyzed(project: Path) -> None:
    lines = [""] * 49_998 + ["def late(optimizer):", "    optimizer.zero_grad"]
    (project / "long.py").write_text("\n".join(lines) + "\n")
    status, document = run_json(".")
    assert status == 1 and document["errors"] == [] and document["skipped"] == []
    assert [(f["path"], f["line"]) for f in document["findings"]] == [
        ("good.py", 2),
        ("long.py", 50_000),
    ]


def test_50k_line_file_without_training_code_is_prefiltered(project: Path) -> None:
    (project / "table.py").write_text("".join(f"V{i} = {i}\n" for i in range(50_000)))
    status, document = run_json(".")
    assert status == 1 and document["errors"] == []
    assert [f["path"] for f in document["findings"]] == ["good.py"]


def test_50k_line_file_over_the_size_cap_is_skipped_not_failed(project: Path) -> None:
    lines = [f"# generated row {i:06d}: {'=' * 20}" for i in range(50_000)]
    (project / "huge.py").write_text("\n".join(lines) + "\noptimizer.zero_grad\n")
    assert (project / "huge.py").stat().st_size > 1_000_000
    status, document = run_json(".")
    assert status == 1 and document["errors"] == []  # exit 1: good.py's finding, no failure
    assert [f["path"] for f in document["findings"]] == ["good.py"]
    (skipped,) = document["skipped"]
    assert skipped["path"] == "huge.py" and skipped["reason"].startswith("skipped: too large")
    status, text = run_text(".")
    assert status == 1
    assert any(row.startswith("huge.py") and "too large" in row for row in text.splitlines())


# ----------------------------------------------------------------------------- filesystem oddities
def test_directory_named_like_a_python_file(project: Path) -> None:
    (project / "x.py").mkdir()
    (project / "x.py" / "inner.py").write_text(GOOD)
    status, document = run_json(".")
    assert status == 1 and document["errors"] == []  # walked like any directory, not read
    assert [f["path"] for f in document["findings"]] == ["good.py", "x.py/inner.py"]
    assert run_json("x.py")[0] == 1


def test_unreadable_file(project: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not make a file unreadable")
    (project / "secret.py").write_text(TRAINING)
    (project / "secret.py").chmod(0)
    try:
        assert_reported("secret.py", "permission denied")
    finally:
        (project / "secret.py").chmod(0o644)


def test_permission_denied_simulated(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same path as test_unreadable_file, reachable when the tests run as root."""
    (project / "secret.py").write_text(TRAINING)
    real_read = safeio.read_regular

    def read_regular(path: Path | str, limit: int = 0) -> bytes:
        if Path(path).name == "secret.py":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path, limit)

    monkeypatch.setattr(safeio, "read_regular", read_regular)
    assert_reported("secret.py", "permission denied")


def test_symlink_loop(project: Path) -> None:
    (project / "loop.py").symlink_to(project / "loop.py")
    (project / "cycle").symlink_to(project, target_is_directory=True)  # a directory cycle
    assert_reported("loop.py", "symbolic link loop")


def test_dangling_symlink(project: Path) -> None:
    (project / "gone.py").symlink_to(project / "deleted.py")
    assert_reported("gone.py", "broken symbolic link")


def test_file_vanishing_during_the_run(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "temp.py").write_text(TRAINING)
    real_discover = trainlint.cli.check.discover

    def discover_then_delete(*args: Any, **kwargs: Any) -> Discovery:
        (project / "temp.py").write_text(TRAINING)
        found = real_discover(*args, **kwargs)
        (project / "temp.py").unlink()
        return found

    monkeypatch.setattr(trainlint.cli.check, "discover", discover_then_delete)
    assert_reported("temp.py", "file not found (deleted during the run?)")


def test_missing_path_on_the_command_line(project: Path) -> None:
    status, document = run_json("good.py", "missing.py")
    assert status == 2
    assert [f["path"] for f in document["findings"]] == ["good.py"]
    assert [(e["path"], e["message"]) for e in document["errors"]] == [
        ("missing.py", "no such file or directory")
    ]


# ----------------------------------------------------------------------------- notebooks
def notebook(*cells: str | list[str], kind: str = "code") -> str:
    return json.dumps(
        {
            "cells": [{"cell_type": kind, "metadata": {}, "source": c} for c in cells],
            "metadata": {},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not a valid notebook: bad JSON: Expecting property name"),
        ('{"cells": 3}', "not a valid notebook: no 'cells' list"),
        ("[1, 2]", "not a valid notebook: no 'cells' list"),
    ],
)
def test_broken_notebook(project: Path, content: str, reason: str) -> None:
    (project / "broken.ipynb").write_text(content)
    (project / "fine.ipynb").write_text(notebook(["import torch\n", "opt.zero_grad\n"]))
    status, document = run_json("--include-notebooks", ".")
    assert status == 2
    assert [(f["path"], f["line"]) for f in document["findings"]] == [
        ("fine.ipynb", 2),
        ("good.py", 2),
    ]
    (error,) = document["errors"]
    assert error["path"] == "broken.ipynb" and error["message"].startswith(reason)


def test_notebook_size_cap_applies_to_its_code_not_its_outputs(project: Path) -> None:
    document = json.loads(notebook(["import torch\n", "opt.zero_grad\n"]))
    image = {"output_type": "display_data", "data": {"image/png": "iVBOR" * 400_000}}
    document["cells"][0]["outputs"] = [image]
    (project / "plots.ipynb").write_text(json.dumps(document))
    assert (project / "plots.ipynb").stat().st_size > 2_000_000
    status, document = run_json("plots.ipynb")
    assert status == 1 and document["skipped"] == []
    assert [(f["path"], f["line"]) for f in document["findings"]] == [("plots.ipynb", 2)]
    (project / "long.ipynb").write_text(notebook(["x = 1  # " + "-" * 60 + "\n"] * 20_000))
    status, document = run_json("long.ipynb")
    assert status == 0
    (skipped,) = document["skipped"]
    assert (
        skipped["reason"].startswith("skipped: too large (1") and "kB of code" in skipped["reason"]
    )


def test_notebook_that_is_not_utf8(project: Path) -> None:
    (project / "latin.ipynb").write_bytes(b'{"cells": ["caf\xe9"]}')
    status, document = run_json("latin.ipynb")
    assert status == 2
    assert document["errors"][0]["message"].startswith("not a valid notebook: not UTF-8")


def test_notebook_syntax_error_names_the_cell(project: Path) -> None:
    (project / "nb.ipynb").write_text(notebook("x = 1\n", "opt.step()\ndef f(:\n"))
    status, document = run_json("nb.ipynb")
    assert status == 2
    (error,) = document["errors"]
    assert error["message"].startswith("syntax error") and "(cell 2, line 2)" in error["message"]


def test_notebook_cells_are_joined_and_magics_neutralised() -> None:
    raw = notebook(
        "# Title",
        ["!pip install torch\n", "import torch\n", "%matplotlib inline\n"],
        ["%%bash\n", "for f in *; do echo $f; done\n"],
        ["%%time\n", "for b in loader:\n", "    %time step()\n", "    files = !ls\n"],
        ["torch.nn.Linear?\n", "?torch.optim\n"],
        "",
        ["x = (a\n", "     % b)\n"],  # valid Python: a `%` continuation line stays as it is
    ).replace('"cell_type": "code", "metadata": {}, "source": "# Title"', '"cell_type": "markdown"')
    text, cell_lines = sources.notebook_to_text(raw.encode())
    lines = text.splitlines()
    assert lines[0] == "pass  # !pip install torch" and lines[1] == "import torch"
    assert lines[4] == "# %%bash" and lines[5].startswith("# for f in")
    assert lines[7:11] == [
        "pass  # %%time",
        "for b in loader:",
        "    pass  # %time step()",
        "    pass  # files = !ls",
    ]
    assert lines[12:14] == ["pass  # torch.nn.Linear?", "pass  # ?torch.optim"]
    assert lines[15:17] == ["x = (a", "     % b)"]
    assert cell_lines[1] == (2, 1) and cell_lines[10] == (4, 3) and cell_lines[17] == (7, 2)
    compile(text, "nb", "exec")  # the whole thing is Python now


def test_notebook_source_as_string_and_odd_cells() -> None:
    raw = json.dumps(
        {
            "cells": [
                {"cell_type": "code", "source": "a = 1\nb = 2"},
                {"cell_type": "code"},
                "not a cell",
                {"cell_type": "code", "source": ["c = 3\r\n", 7]},
                {"cell_type": "raw", "source": "ignored"},
            ]
        }
    )
    text, cell_lines = sources.notebook_to_text(raw.encode())
    assert text == "a = 1\nb = 2\n\nc = 3\n\n"
    assert cell_lines == {1: (1, 1), 2: (1, 2), 4: (4, 1)}


def test_identifier_python_rejects(project: Path) -> None:
    """libcst's tokenizer knows newer Unicode than Python 3.11: it parses U+31350 as a name,
    then rejects it as an invalid identifier (found by the fuzz test)."""
    if "\U00031350".isidentifier():
        pytest.skip("this Python's Unicode tables accept U+31350 as a name")
    (project / "odd.py").write_text(TRAINING + "\U00031350 = 2\n")
    assert_reported("odd.py", "syntax error: ", line=2)


def test_notebook_findings_name_cells_in_their_messages(project: Path) -> None:
    setup = "import torch\nfrom torch import nn\nmodel = nn.Linear(4, 1)\n"
    setup += "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
    loop = "for x, y in loader:\n    loss = ((model(x) - y) ** 2).mean()\n"
    loop += "    loss.backward()\n    opt.step()\n"
    (project / "nb.ipynb").write_text(notebook(setup, loop))
    result = CliRunner().invoke(
        main, ["check", "--no-cache", "--include-notebooks", "--format", "json", "nb.ipynb"]
    )
    (finding,) = json.loads(result.output)["findings"]
    assert finding["code"] == "TL101"
    # the loop and step lines the message cites, and the anchor, are all in cell 2
    assert "cell 2, line 4" in finding["message"] and "cell 2, line 1" in finding["message"]
    assert finding["message"].endswith("(cell 2, line 3)")
    text = (
        CliRunner()
        .invoke(main, ["check", "--no-cache", "--include-notebooks", "--no-color", "nb.ipynb"])
        .output
    )
    assert "nb.ipynb:cell 2:3:5:" in text and "(cell 2, line 3)" not in text


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ([" x = [1,", "      2]", "y = x"], ["x = [1,", "     2]", "y = x"]),
        (
            ["!python prep.py --a 1 \\", "      --b 2", "import torch"],
            ["pass  # !python prep.py --a 1 \\", "# --b 2", "import torch"],
        ),
        (["cd ~/data", "import os"], ["pass  # cd ~/data", "import os"]),
        (["torch.*Tensor?"], ["pass  # torch.*Tensor?"]),
        (["ls = [1]", "ls"], ["ls = [1]", "ls"]),
    ],
)
def test_ipython_only_syntax_is_neutralised(cell: list[str], expected: list[str]) -> None:
    assert sources.cell_to_python(cell) == expected
