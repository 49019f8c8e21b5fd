""".gitignore matching without git (train/corpus/gitignore.py), checked case by case and against git."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from train.corpus.gitignore import GitIgnore, compile_pattern, compile_patterns, decide
from train.corpus.reading import Tally
from train.corpus.walk import Selection, walk


@pytest.mark.parametrize(
    "pattern, path, is_dir, expected",
    [
        ("*.log", "a.log", False, True),
        ("*.log", "deep/er/a.log", False, True),
        ("*.log", "a.log.txt", False, False),
        ("/top.txt", "top.txt", False, True),
        ("/top.txt", "sub/top.txt", False, False),
        ("build/", "build", True, True),
        ("build/", "build", False, False),  # a file named build is not a folder
        ("build/", "x/build", True, True),
        ("doc/frotz", "doc/frotz", False, True),
        ("doc/frotz", "a/doc/frotz", False, False),  # a middle slash anchors
        ("**/foo", "a/b/foo", False, True),
        ("**/foo", "foo", False, True),
        ("abc/**", "abc/x/y", False, True),
        ("abc/**", "abc", True, False),
        ("a/**/b", "a/b", False, True),
        ("a/**/b", "a/x/y/b", False, True),
        ("a/**/b", "ab", False, False),
        ("?.py", "x.py", False, True),
        ("?.py", "xy.py", False, False),
        ("[ab].txt", "b.txt", False, True),
        ("[!ab].txt", "c.txt", False, True),
        ("[!ab].txt", "a.txt", False, False),
        ("*", "a/b", False, True),  # a name at any depth
        ("a*b", "a/b", False, False),  # * never crosses a slash
        ("\\#hash", "#hash", False, True),
        ("\\!bang", "!bang", False, True),
        ("trail\\ ", "trail ", False, True),
        ("trail   ", "trail", False, True),
    ],
)
def test_pattern_cases(pattern, path, is_dir, expected):
    p = compile_pattern(pattern)
    assert p is not None and p.matches(path, is_dir) is expected


def test_comments_blank_and_negation():
    assert compile_pattern("# a comment") is None and compile_pattern("") is None and compile_pattern("   ") is None
    pats = compile_patterns(["*.txt", "!keep.txt"])
    assert decide(pats, "drop.txt", False) is True
    assert decide(pats, "keep.txt", False) is False
    assert decide(pats, "other.py", False) is None


def test_deeper_gitignore_overrides_parent(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".gitignore").write_text("*.txt\n")
    (tmp_path / "sub" / ".gitignore").write_text("!keep.txt\n")
    ign = GitIgnore(tmp_path)
    ign.load("")
    ign.load("sub")
    assert ign.ignored("a.txt", False) and ign.ignored("sub/b.txt", False)
    assert not ign.ignored("sub/keep.txt", False) and ign.ignored("keep.txt", False)
    assert ign.files == [".gitignore", "sub/.gitignore"]


def make_ignore_tree(root: Path) -> None:
    files = ["a.py", "a.log", "keep.log", "notes/x.md", "notes/private/y.md", "out/gen.txt", "src/m.py",
             "src/m.pyc", "src/deep/out/z.txt", "src/deep/k.tmp", "docs/a.txt", "docs/b.txt", "docs/sub/c.txt",
             "only_top.cfg", "src/only_top.cfg", "x1.dat", "xz.dat", "space .txt", "lib/vendor/v.js",
             "lib/own.js", "#hash.txt"]
    for f in files:
        p = root / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"content of {f}\n")
    (root / ".gitignore").write_text(
        "# comment\n*.log\n!keep.log\nnotes/private/\nout/\n*.pyc\n/only_top.cfg\nx[0-9].dat\n"
        "space\\ .txt\nlib/**/v.js\n\\#hash.txt\n")
    (root / "src" / ".gitignore").write_text("*.tmp\n")
    (root / "docs" / ".gitignore").write_text("*.txt\n!b.txt\n")


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_agrees_with_git(tmp_path):
    make_ignore_tree(tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".git" / "info").mkdir(exist_ok=True)
    (tmp_path / ".git" / "info" / "exclude").write_text("lib/own.js\n")
    r = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=tmp_path, check=True,
                       capture_output=True, text=True, env={"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path),
                                                             "PATH": "/usr/bin:/bin"})
    by_git = sorted(line.strip('"') for line in r.stdout.splitlines())
    ours = sorted(rel for rel, _ in walk(tmp_path, Selection(gitignore=GitIgnore(tmp_path))))
    assert ours == by_git
    # and the tree really exercises the rules: these are kept / dropped
    assert "keep.log" in ours and "docs/b.txt" in ours and "src/only_top.cfg" in ours and "xz.dat" in ours
    for gone in ("a.log", "notes/private/y.md", "out/gen.txt", "src/deep/out/z.txt", "src/deep/k.tmp", "docs/a.txt",
                 "only_top.cfg", "x1.dat", "space .txt", "lib/vendor/v.js", "lib/own.js", "#hash.txt"):
        assert gone not in ours


def test_walk_counts_gitignored(tmp_path):
    make_ignore_tree(tmp_path)
    skipped = Tally()
    list(walk(tmp_path, Selection(gitignore=GitIgnore(tmp_path)), skipped))
    assert skipped.skipped["gitignored"] >= 8
    assert "out/" in skipped.examples["gitignored"]
