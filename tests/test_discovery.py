"""Discovery: which files a run analyzes, in which order, and what it skips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import trainlint.discovery
from trainlint.discovery import DEFAULT_EXCLUDES, Discovery, discover


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x = 1\n")


def found(root: Path, *paths: str | Path, **options: object) -> list[str]:
    """The discovered files as posix paths relative to ``root``."""
    given = [root / p for p in paths] if paths else [root]
    result = discover(given, root=root, **options)  # type: ignore[arg-type]
    assert result.errors == []
    return [Path(os.path.relpath(f, root)).as_posix() for f in result.files]


def test_python_files_in_a_stable_order(tmp_path: Path) -> None:
    touch(tmp_path, "b.py", "a.py", "pkg/z.py", "pkg/sub/y.py", "stub.pyi", "notes.txt", "a.pyc")
    expected = ["a.py", "b.py", "pkg/sub/y.py", "pkg/z.py", "stub.pyi"]
    assert found(tmp_path) == expected
    assert found(tmp_path) == expected  # the same every time


def test_notebooks_only_when_asked(tmp_path: Path) -> None:
    touch(tmp_path, "train.py", "explore.ipynb", ".ipynb_checkpoints/explore-checkpoint.ipynb")
    assert found(tmp_path) == ["train.py"]
    assert found(tmp_path, include_notebooks=True) == ["explore.ipynb", "train.py"]


@pytest.mark.parametrize(
    "folder",
    [
        ".git",
        ".hg",
        "__pycache__",
        "build",
        "dist",
        "node_modules",
        ".trainlint_cache",
        ".venv",
        "venv",
        ".tox",
        "site-packages",
        "pkg.egg-info",
        "deep/er/build",
    ],
)
def test_default_skips(tmp_path: Path, folder: str) -> None:
    touch(tmp_path, "main.py", f"{folder}/hidden.py")
    assert found(tmp_path) == ["main.py"]


def test_any_virtualenv_is_skipped_by_its_pyvenv_cfg(tmp_path: Path) -> None:
    touch(tmp_path, "main.py", "my-env/lib/site.py")
    (tmp_path / "my-env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    assert found(tmp_path) == ["main.py"]


def test_vcs_and_cache_folders_skipped_even_with_a_custom_exclude(tmp_path: Path) -> None:
    touch(tmp_path, "main.py", ".git/hooks/x.py", ".trainlint_cache/y.py", "build/z.py")
    assert found(tmp_path, exclude=["nothing"]) == ["build/z.py", "main.py"]


def test_gitignore_root_and_nested(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "keep.py",
        "generated.py",
        "logs/run.py",
        "pkg/keep.py",
        "pkg/local_only.py",
        "pkg/data/x.py",
        "pkg/sub/local_only.py",
    )
    (tmp_path / ".gitignore").write_text("# comment\ngenerated.py\nlogs/\n")
    (tmp_path / "pkg" / ".gitignore").write_text("local_only.py\n/data\n")
    assert found(tmp_path) == ["keep.py", "pkg/keep.py"]
    assert len(found(tmp_path, respect_gitignore=False)) == 7


def test_gitignore_negation(tmp_path: Path) -> None:
    touch(tmp_path, "gen_a.py", "gen_keep.py", "main.py")
    (tmp_path / ".gitignore").write_text("gen_*.py\n!gen_keep.py\n")
    assert found(tmp_path) == ["gen_keep.py", "main.py"]


def test_gitignore_of_the_repository_applies_below_it(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".gitignore").write_text("scratch/\n")
    touch(tmp_path, "src/scratch/x.py", "src/main.py")
    assert found(tmp_path, "src") == ["src/main.py"]


def test_gitignore_of_the_config_directory_applies_outside_a_repository(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("scratch/\n")
    touch(tmp_path, "src/scratch/x.py", "src/main.py")
    assert found(tmp_path, "src") == ["src/main.py"]
    for beyond_the_config in (tmp_path / "src", tmp_path / "elsewhere"):
        assert discover([tmp_path / "src"], root=beyond_the_config).files == [
            tmp_path / "src/main.py",
            tmp_path / "src/scratch/x.py",
        ]


def test_config_exclude_and_extend_exclude(tmp_path: Path) -> None:
    touch(tmp_path, "main.py", "generated/a.py", "legacy/old.py", "build/b.py", "src/tmp_x.py")
    assert found(tmp_path, extend_exclude=["generated", "tmp_*.py"]) == ["legacy/old.py", "main.py"]
    assert found(tmp_path, exclude=["legacy/"]) == [
        "build/b.py",
        "generated/a.py",
        "main.py",
        "src/tmp_x.py",
    ]
    # anchored patterns are relative to the root (the config's directory)
    assert found(tmp_path, extend_exclude=["/src/tmp_x.py"]) == [
        "generated/a.py",
        "legacy/old.py",
        "main.py",
    ]


def test_explicit_files_are_analyzed_even_if_excluded(tmp_path: Path) -> None:
    touch(tmp_path, "build/setup_helper.py", "gen.py", "script")
    (tmp_path / ".gitignore").write_text("gen.py\n")
    assert found(tmp_path, "build/setup_helper.py", "gen.py", "script") == [
        "build/setup_helper.py",
        "gen.py",
        "script",
    ]


def test_force_exclude_applies_excludes_to_explicit_files(tmp_path: Path) -> None:
    touch(tmp_path, "build/gen.py", "deep/build/x.py", "src/tmp_a.py", "src/main.py")
    named = ("build/gen.py", "deep/build/x.py", "src/tmp_a.py", "src/main.py")
    options = {"extend_exclude": ["tmp_*.py"], "force_exclude": True}
    assert found(tmp_path, *named, **options) == ["src/main.py"]
    assert found(tmp_path, *named, extend_exclude=["tmp_*.py"]) == list(named)
    assert found(tmp_path, "src", **options) == ["src/main.py"]


def test_explicit_directory_is_walked_even_if_its_name_is_excluded(tmp_path: Path) -> None:
    touch(tmp_path, "build/a.py", "build/dist/b.py")
    assert found(tmp_path, "build") == ["build/a.py"]


def test_paths_keep_the_spelling_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path, "pkg/a.py")
    monkeypatch.chdir(tmp_path)
    assert discover([Path("pkg")], root=tmp_path).files == [Path("pkg/a.py")]
    assert discover([Path(".")], root=tmp_path).files == [Path("pkg/a.py")]
    assert discover([tmp_path / "pkg"], root=tmp_path).files == [tmp_path / "pkg" / "a.py"]


def test_overlapping_paths_run_each_file_once(tmp_path: Path) -> None:
    touch(tmp_path, "pkg/a.py", "pkg/b.py")
    assert found(tmp_path, "pkg", "pkg/a.py", ".", "pkg/../pkg/b.py") == ["pkg/a.py", "pkg/b.py"]


def test_symlink_loop_terminates(tmp_path: Path) -> None:
    touch(tmp_path, "pkg/a.py")
    (tmp_path / "pkg" / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "pkg" / "self").symlink_to(tmp_path / "pkg" / "self")
    assert found(tmp_path) == ["pkg/a.py"]


def test_symlinked_file_runs_once(tmp_path: Path) -> None:
    touch(tmp_path, "real.py")
    (tmp_path / "alias.py").symlink_to(tmp_path / "real.py")
    assert found(tmp_path) == ["alias.py"]


def test_broken_symlinks_ending_in_py_are_kept_for_the_engine_to_report(tmp_path: Path) -> None:
    (tmp_path / "dangling.py").symlink_to(tmp_path / "missing.py")
    (tmp_path / "dangling_dir").symlink_to(tmp_path / "missing", target_is_directory=True)
    assert found(tmp_path) == ["dangling.py"]


def test_directory_named_like_a_python_file_is_walked(tmp_path: Path) -> None:
    touch(tmp_path, "x.py/inner.py")
    assert found(tmp_path) == ["x.py/inner.py"]
    assert found(tmp_path, "x.py") == ["x.py/inner.py"]


def test_missing_path_is_an_error_and_the_rest_still_found(tmp_path: Path) -> None:
    touch(tmp_path, "a.py")
    result = discover([tmp_path / "nowhere", tmp_path / "a.py"], root=tmp_path)
    assert result.files == [tmp_path / "a.py"]
    assert result.errors == [(tmp_path / "nowhere", "no such file or directory")]


def test_unreadable_directory_is_reported_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(tmp_path, "a.py", "locked/b.py", "z.py")
    real_scandir = os.scandir

    def scandir(path: os.PathLike[str] | str) -> object:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(trainlint.discovery.os, "scandir", scandir)
    result = discover([tmp_path], root=tmp_path)
    assert [f.name for f in result.files] == ["a.py", "z.py"]
    assert result.errors == [(tmp_path / "locked", "cannot read directory: Permission denied")]


def test_really_unreadable_directory(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not make a directory unreadable")
    touch(tmp_path, "a.py", "locked/b.py")
    (tmp_path / "locked").chmod(0)
    try:
        result = discover([tmp_path], root=tmp_path)
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert [f.name for f in result.files] == ["a.py"]
    assert [path.name for path, _ in result.errors] == ["locked"]


def test_special_file_is_an_error(tmp_path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    os.mkfifo(tmp_path / "pipe.py")
    result = discover([tmp_path / "pipe.py"], root=tmp_path)
    assert result == Discovery(
        [],
        [(tmp_path / "pipe.py", "a FIFO, not a regular file or directory; not read")],
    )


def test_default_excludes_cover_the_usual_folders() -> None:
    for name in ("build", "dist", "__pycache__", "node_modules", ".trainlint_cache", ".venv"):
        assert name in DEFAULT_EXCLUDES
