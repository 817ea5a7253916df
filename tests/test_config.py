"""Configuration: finding the file, every key, every error, and rule selection layering."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainlint.cli import main
from trainlint.cli.check import relative_glob
from trainlint.config import (
    Config,
    ConfigError,
    RuleSelection,
    find_config,
    load_config,
    resolve_selection,
    select_codes,
)
from trainlint.rule import Severity

KNOWN = ["TL101", "TL102", "TL201", "TL405", "TL504"]
BAD = "def train(optimizer):\n    optimizer.zero_grad\n"  # TL405, error
#: TL504, info
INFO = "import torch\n\n\ndef run(net: torch.nn.Module, x):\n    return net.forward(x)\n"


def load(tmp_path: Path, body: str, name: str = "pyproject.toml") -> Config:
    path = tmp_path / name
    path.write_text(body)
    return load_config(path, KNOWN)


def table(tmp_path: Path, body: str) -> Config:
    return load(tmp_path, f"[tool.trainlint]\n{body}\n")


def error(tmp_path: Path, body: str, name: str = "pyproject.toml") -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, body if name != "pyproject.toml" else f"[tool.trainlint]\n{body}\n", name)
    message = str(caught.value)
    assert message.startswith(str(tmp_path / name) + ": ")
    assert "\n" not in message
    return message.removeprefix(str(tmp_path / name) + ": ")


# ----------------------------------------------------------------------------- finding the file
def test_found_by_walking_up(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.trainlint]\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "train.py").write_text("")
    assert find_config(deep / "train.py") == tmp_path / "pyproject.toml"
    assert find_config(deep) == tmp_path / "pyproject.toml"


def test_pyproject_without_the_table_is_passed_over(tmp_path: Path) -> None:
    (tmp_path / "trainlint.toml").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")
    assert find_config(tmp_path / "sub") == tmp_path / "trainlint.toml"


def test_nearest_wins_and_trainlint_toml_before_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.trainlint]\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pyproject.toml").write_text("[tool.trainlint]\n")
    assert find_config(tmp_path / "sub") == tmp_path / "sub" / "pyproject.toml"
    (tmp_path / "sub" / "trainlint.toml").write_text("")
    assert find_config(tmp_path / "sub") == tmp_path / "sub" / "trainlint.toml"


def test_broken_pyproject_is_reported_only_when_it_mentions_trainlint(tmp_path: Path) -> None:
    (tmp_path / "trainlint.toml").write_text("")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "pyproject.toml").write_text("[tool.other\n")
    assert find_config(tmp_path / "a") == tmp_path / "trainlint.toml"
    (tmp_path / "a" / "pyproject.toml").write_text("[tool.trainlint\nselect = 1\n")
    assert find_config(tmp_path / "a") == tmp_path / "a" / "pyproject.toml"


def test_trainlint_toml_top_level_or_table(tmp_path: Path) -> None:
    assert load(tmp_path, 'select = ["TL4"]\n', "trainlint.toml").select == ["TL4"]
    assert load(tmp_path, '[tool.trainlint]\nselect = ["TL5"]\n', "trainlint.toml").select == [
        "TL5"
    ]


# ----------------------------------------------------------------------------- every key
def test_defaults(tmp_path: Path) -> None:
    config = table(tmp_path, "")
    assert config.select is None and config.ignore == [] and config.extend_select == []
    assert config.exclude is None and config.extend_exclude == []
    assert config.per_file_ignores == {} and config.severity == {}
    assert config.fail_on is Severity.WARNING and config.format == "text"
    assert config.cache_dir is None and config.max_file_size == 1_000_000
    assert config.include_notebooks is False and config.respect_gitignore is True
    assert config.force_exclude is False
    assert config.root == tmp_path


def test_every_key(tmp_path: Path) -> None:
    config = table(
        tmp_path,
        """
select = ["TL1", "tl405"]
ignore = ["TL102"]
extend-select = ["TL504"]
exclude = ["generated"]
extend-exclude = ["scratch/*.py"]
fail-on = "error"
format = "sarif"
cache-dir = "var/cache"
max-file-size = 0
include-notebooks = true
respect-gitignore = false
force-exclude = true

[tool.trainlint.per-file-ignores]
"tests/*.py" = ["TL405"]
"legacy.py" = "TL1"

[tool.trainlint.severity]
TL504 = "warning"
TL1 = "info"
""",
    )
    assert config.select == ["TL1", "TL405"]
    assert config.ignore == ["TL102"] and config.extend_select == ["TL504"]
    assert config.exclude == ["generated"] and config.extend_exclude == ["scratch/*.py"]
    assert config.fail_on is Severity.ERROR and config.format == "sarif"
    assert config.cache_dir == (tmp_path / "var" / "cache").resolve()
    assert config.max_file_size == 0
    assert config.include_notebooks is True and config.respect_gitignore is False
    assert config.force_exclude is True
    assert config.per_file_ignores == {"tests/*.py": ["TL405"], "legacy.py": ["TL1"]}
    assert config.severity == {"TL504": Severity.WARNING, "TL1": Severity.INFO}
    assert config.severity_overrides(KNOWN) == {
        "TL101": Severity.INFO,
        "TL102": Severity.INFO,
        "TL504": Severity.WARNING,
    }


def test_most_specific_severity_override_wins(tmp_path: Path) -> None:
    config = table(
        tmp_path, '[tool.trainlint.severity]\nALL = "info"\nTL1 = "warning"\nTL101 = "error"'
    )
    overrides = config.severity_overrides(KNOWN)
    assert overrides["TL101"] is Severity.ERROR
    assert overrides["TL102"] is Severity.WARNING
    assert overrides["TL405"] is Severity.INFO


# ----------------------------------------------------------------------------- every error
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("selct = []", "unknown key 'selct' in [tool.trainlint] (did you mean 'select'?)"),
        ("colour = true", "unknown key 'colour' in [tool.trainlint]"),
        ("select = 3", "'select' must be a list of strings, not a number"),
        ("select = [1]", "'select' must be a list of strings, not a list containing a number"),
        ("ignore = true", "'ignore' must be a list of strings, not a boolean"),
        ("extend-select = {}", "'extend-select' must be a list of strings, not a table"),
        ('select = ["TL999"]', "'select': unknown rule code or prefix 'TL999'"),
        (
            'ignore = ["TL406"]',
            "'ignore': unknown rule code or prefix 'TL406' (did you mean TL405?)",
        ),
        ('extend-select = ["XY1"]', "'extend-select': unknown rule code or prefix 'XY1'"),
        ("exclude = 1", "'exclude' must be a list of strings, not a number"),
        ("extend-exclude = [true]", "'extend-exclude' must be a list of strings, not a list"),
        ('fail-on = "fatal"', "'fail-on' must be one of info, warning, error, not 'fatal'"),
        ("fail-on = 2", "'fail-on' must be one of info, warning, error, not a number"),
        ('format = "xml"', "'format' must be one of text, json, sarif, github, junit, not 'xml'"),
        ("cache-dir = 1", "'cache-dir' must be a path string, not a number"),
        ('cache-dir = ""', "'cache-dir' must not be empty (an unset variable?)"),
        ("max-file-size = -1", "'max-file-size' must be a number of bytes (0: no limit)"),
        ('max-file-size = "1MB"', "'max-file-size' must be a number of bytes"),
        ('include-notebooks = "yes"', "'include-notebooks' must be true or false, not a string"),
        ("respect-gitignore = 1", "'respect-gitignore' must be true or false, not a number"),
        ("force-exclude = []", "'force-exclude' must be true or false, not a list"),
        ('per-file-ignores = ["x"]', "'per-file-ignores' must be a table of \"glob\" = [codes]"),
        (
            '[tool.trainlint.per-file-ignores]\n"a.py" = 1',
            "'per-file-ignores.a.py' must be a list of strings, not a number",
        ),
        (
            '[tool.trainlint.per-file-ignores]\n"a.py" = ["TL9"]',
            "'per-file-ignores.a.py': unknown rule code or prefix 'TL9'",
        ),
        ('severity = "error"', "'severity' must be a table of CODE = \"error|warning|info\""),
        (
            '[tool.trainlint.severity]\nTL999 = "error"',
            "'severity.TL999': unknown rule code or prefix 'TL999'",
        ),
        (
            '[tool.trainlint.severity]\nTL405 = "fatal"',
            "'severity.TL405' must be one of info, warning, error, not 'fatal'",
        ),
        ("[tool.trainlint.severity]\nTL405 = 3", "'severity.TL405' must be one of info, warning"),
    ],
)
def test_every_error_names_file_and_key(tmp_path: Path, body: str, expected: str) -> None:
    assert error(tmp_path, body).startswith(expected)


def test_table_must_be_a_table(tmp_path: Path) -> None:
    assert error(tmp_path, "[tool]\ntrainlint = 1\n", "trainlint.toml").startswith(
        "[tool.trainlint] must be a table"
    )


def test_invalid_toml(tmp_path: Path) -> None:
    assert error(tmp_path, "select = [", "trainlint.toml").startswith("invalid TOML: ")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "trainlint.toml"
    path.write_bytes(b'select = ["\xff"]\n')
    with pytest.raises(ConfigError, match=r"trainlint.toml: config is not UTF-8 text$"):
        load_config(path, KNOWN)


def test_unreadable_and_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="absent.toml: config file not found$"):
        load_config(tmp_path / "absent.toml", KNOWN)
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match="dir.toml: is a directory, not a config file$"):
        load_config(tmp_path / "dir.toml", KNOWN)
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not make a file unreadable")
    path = tmp_path / "trainlint.toml"
    path.write_text("")
    path.chmod(0)
    try:
        with pytest.raises(ConfigError, match="trainlint.toml: cannot read config: "):
            load_config(path, KNOWN)
    finally:
        path.chmod(0o644)


# ----------------------------------------------------------------------------- selection
@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ([], KNOWN),
        ([RuleSelection(select=["TL1"])], ["TL101", "TL102"]),
        ([RuleSelection(select=["TL1"], ignore=["TL101"])], ["TL102"]),
        ([RuleSelection(select=["TL101"], ignore=["TL1"])], ["TL101"]),
        ([RuleSelection(select=["ALL"], ignore=["ALL"])], []),
        ([RuleSelection(ignore=["TL1", "TL2"])], ["TL405", "TL504"]),
        ([RuleSelection(extend_select=["TL4"], select=["TL5"])], ["TL405", "TL504"]),
        ([RuleSelection(ignore=["TL4"]), RuleSelection(select=["TL405"])], ["TL405"]),
        (
            [RuleSelection(select=["TL4"]), RuleSelection(extend_select=["TL101"])],
            ["TL101", "TL405"],
        ),
        ([RuleSelection(select=["TL4"]), RuleSelection(ignore=["TL405"])], []),
        ([RuleSelection(select=[])], []),
    ],
)
def test_resolve_selection(layers: list[RuleSelection], expected: list[str]) -> None:
    assert resolve_selection(KNOWN, *layers) == expected


def test_select_codes_one_layer_form() -> None:
    assert select_codes(KNOWN, None, ["TL1"]) == ["TL201", "TL405", "TL504"]
    assert select_codes(KNOWN, None, ["TL1"], ["TL101"]) == ["TL101", "TL201", "TL405", "TL504"]
    assert select_codes(KNOWN, ["TL1"], []) == ["TL101", "TL102"]


# ----------------------------------------------------------------------------- through the CLI
@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "bad.py").write_text(BAD)
    (tmp_path / "info.py").write_text(INFO)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


def run(project: Path, config: str, *args: str) -> tuple[int, list[tuple[str, str]], str]:
    (project / "pyproject.toml").write_text(f"[tool.trainlint]\n{config}\n")
    result = CliRunner().invoke(main, ["check", "--no-cache", "--format", "json", *args])
    if result.exit_code == 2 and not result.stdout:
        return 2, [], result.stderr
    document = json.loads(result.stdout)
    return result.exit_code, [(f["path"], f["code"]) for f in document["findings"]], ""


def test_cli_reads_select_ignore_and_severity(project: Path) -> None:
    assert run(project, 'select = ["TL5"]')[1] == [("info.py", "TL504")]
    assert run(project, 'ignore = ["TL5"]')[1] == [("bad.py", "TL405")]
    assert run(project, 'select = ["TL5"]\nextend-select = ["TL405"]')[:2] == (
        1,
        [("bad.py", "TL405"), ("info.py", "TL504")],
    )
    assert run(project, '[tool.trainlint.severity]\nTL405 = "info"')[0] == 0
    assert run(project, '[tool.trainlint.severity]\nTL504 = "error"', "info.py")[0] == 1


def test_cli_reads_fail_on_format_and_cache_dir(project: Path) -> None:
    assert run(project, 'fail-on = "info"', "info.py")[0] == 1
    (project / "pyproject.toml").write_text(
        '[tool.trainlint]\nformat = "github"\ncache-dir = "c"\n'
    )
    result = CliRunner().invoke(main, ["check", "bad.py"])
    assert result.stdout.startswith("::error file=bad.py,line=2,col=5")
    assert (project / "c").is_dir() and not (project / ".trainlint_cache").exists()


def test_cli_reads_per_file_ignores(project: Path) -> None:
    (project / "tests").mkdir()
    (project / "tests" / "test_x.py").write_text(BAD)
    config = '[tool.trainlint.per-file-ignores]\n"tests/*.py" = ["TL405"]\n"info.py" = ["TL5"]'
    assert run(project, config)[1] == [("bad.py", "TL405")]


def test_per_file_ignores_are_relative_to_the_config(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "pkg" / "tests").mkdir(parents=True)
    (project / "pkg" / "tests" / "test_x.py").write_text(BAD)
    (project / "pkg" / "keep.py").write_text(BAD)
    (project / "pyproject.toml").write_text(
        '[tool.trainlint.per-file-ignores]\n"pkg/tests/*.py" = ["TL405"]\n'
    )
    monkeypatch.chdir(project / "pkg")  # run from below the config
    result = CliRunner().invoke(main, ["check", "--no-cache", "--format", "json", "."])
    assert [f["path"] for f in json.loads(result.stdout)["findings"]] == ["keep.py"]


def test_relative_glob() -> None:
    root = Path("/p")
    assert relative_glob("test_*.py", root, Path("/p/sub")) == "test_*.py"
    assert relative_glob("**/gen/*.py", root, Path("/p/sub")) == "**/gen/*.py"
    assert relative_glob("sub/t/*.py", root, Path("/p/sub")) == "t/*.py"
    assert relative_glob("other/*.py", root, Path("/p/sub")) == "../other/*.py"
    assert relative_glob("t/*.py", Path("/p/sub"), root) == "sub/t/*.py"


def test_cli_reads_exclude_and_extend_exclude(project: Path) -> None:
    for folder in ("generated", "scratch", "build"):
        (project / folder).mkdir()
        (project / folder / "m.py").write_text(BAD)
    found = {path for path, _ in run(project, 'extend-exclude = ["generated"]')[1]}
    assert found == {"bad.py", "info.py", "scratch/m.py"}  # build/ stays excluded by default
    found = {path for path, _ in run(project, 'exclude = ["scratch"]')[1]}
    # exclude replaces the defaults
    assert found == {"bad.py", "info.py", "generated/m.py", "build/m.py"}


def test_cli_reads_max_file_size(project: Path) -> None:
    (project / "big.py").write_text(BAD + "# padding\n" * 300)
    status, found, _ = run(project, "max-file-size = 1000", "big.py", "bad.py")
    assert status == 1 and found == [("bad.py", "TL405")]  # big.py skipped, not an error


def test_cli_reads_include_notebooks_and_respect_gitignore(project: Path) -> None:
    (project / "nb.ipynb").write_text(
        json.dumps({"cells": [{"cell_type": "code", "source": "opt.zero_grad\n"}]})
    )
    (project / ".gitignore").write_text("bad.py\n")
    found = {path for path, _ in run(project, "")[1]}
    assert found == {"info.py"}
    found = {
        path for path, _ in run(project, "include-notebooks = true\nrespect-gitignore = false")[1]
    }
    assert found == {"bad.py", "info.py", "nb.ipynb"}


def test_cli_reads_force_exclude(project: Path) -> None:
    (project / "gen").mkdir()
    (project / "gen" / "m.py").write_text(BAD)
    assert run(project, 'extend-exclude = ["gen"]', "gen/m.py")[1] == [("gen/m.py", "TL405")]
    config = 'extend-exclude = ["gen"]\nforce-exclude = true'
    assert run(project, config, "gen/m.py", "bad.py")[1] == [("bad.py", "TL405")]


def test_cli_config_errors_exit_2(project: Path) -> None:
    status, _, stderr = run(project, 'select = ["TL999"]')
    assert status == 2
    assert stderr.strip().startswith(
        f"trainlint: error: {project / 'pyproject.toml'}: 'select': "
        "unknown rule code or prefix 'TL999'"
    )
    (project / "pyproject.toml").write_text("[tool.trainlint\n")
    result = CliRunner().invoke(main, ["check", "bad.py"])
    assert result.exit_code == 2 and "pyproject.toml: invalid TOML" in result.stderr
