"""`.gitignore` matching without git: the pattern language of gitignore(5), also used for the
`--include` / `--exclude` globs of `scratchpad data build files`.

A pattern is matched against a path relative to the folder its `.gitignore` lives in (POSIX
separators, no leading "./"):
  * blank lines and lines starting with "#" are ignored; "\\#" and "\\!" escape a leading # or !;
    trailing spaces are dropped unless escaped with a backslash;
  * "!" negates (re-includes) a path an earlier pattern excluded;
  * a trailing "/" matches directories only;
  * a pattern with a "/" at its start or in its middle is anchored to the .gitignore's folder;
    otherwise it matches a name at any depth below it;
  * "*" matches anything but "/", "?" one character but "/", "[a-z]" / "[!a-z]" a class;
    a leading "**/" matches in every folder, a trailing "/**" everything inside, "/**/" zero or
    more folders; any other "**" is a plain "*".
Rules: the last matching pattern decides; the .gitignore of a deeper folder comes after those of
its parents (and .git/info/exclude comes first); a path inside an ignored folder stays ignored
(callers stop walking into ignored folders, as git does).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pattern:
    text: str
    regex: re.Pattern
    negate: bool = False
    dir_only: bool = False

    def matches(self, rel: str, is_dir: bool) -> bool:
        return (is_dir or not self.dir_only) and self.regex.fullmatch(rel) is not None


def _strip_trailing_spaces(line: str) -> str:
    end = len(line)
    while end > 0 and line[end - 1] == " ":
        backslashes = len(line[:end - 1]) - len(line[:end - 1].rstrip("\\"))
        if backslashes % 2:  # an escaped space stays
            break
        end -= 1
    return line[:end]


def _char_class(pat: str, i: int) -> tuple[str, int] | None:
    """Regex for the class starting at pat[i] == "[" and the index after it; None if unclosed."""
    j = i + 1
    if j < len(pat) and pat[j] in "!^":
        j += 1
    if j < len(pat) and pat[j] == "]":
        j += 1
    while j < len(pat) and pat[j] != "]":
        j += 2 if pat[j] == "\\" else 1
    if j >= len(pat):
        return None
    body = pat[i + 1:j]
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    body = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
    return ("[^/" + body + "]" if negate else "[" + body + "]"), j + 1


def translate(pat: str) -> str:
    """Regex source (for fullmatch) of one glob body: no leading "!" or trailing "/"."""
    out, i, n = [], 0, len(pat)
    while i < n:
        c = pat[i]
        at_segment_start = i == 0 or pat[i - 1] == "/"
        if pat.startswith("**/", i) and at_segment_start:
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i) and at_segment_start and i + 2 == n:
            out.append(".*" if i == 0 else ".+")
            i += 2
        elif c == "*":
            while i < n and pat[i] == "*":
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (cls := _char_class(pat, i)) is not None:
            out.append(cls[0])
            i = cls[1]
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pat[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def compile_pattern(line: str) -> Pattern | None:
    """One .gitignore line (or glob) -> Pattern; None for blank lines and comments."""
    text = line.rstrip("\n").rstrip("\r")
    if not text or text.startswith("#"):
        return None
    body = _strip_trailing_spaces(text)
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    elif body.startswith(("\\!", "\\#")):
        body = body[1:]
    dir_only = body.endswith("/")
    body = body.rstrip("/")
    if not body:
        return None
    anchored = "/" in body
    body = body[1:] if body.startswith("/") else body
    regex = ("" if anchored else "(?:.*/)?") + translate(body)
    return Pattern(text, re.compile(regex, re.DOTALL), negate, dir_only)


def compile_patterns(lines) -> list[Pattern]:
    return [p for p in map(compile_pattern, lines) if p is not None]


def decide(patterns: list[Pattern], rel: str, is_dir: bool, current: bool | None = None) -> bool | None:
    """The last matching pattern's verdict (True = excluded), or `current` when none matches."""
    for p in patterns:
        if p.matches(rel, is_dir):
            current = not p.negate
    return current


class GitIgnore:
    """The ignore rules of a tree: `load(folder)` each folder while walking top-down, then ask
    `ignored(rel, is_dir)` for its entries (rel relative to the tree's root)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.rules: dict[str, list[Pattern]] = {}  # folder rel ("" = root) -> its patterns
        self.files: list[str] = []  # the ignore files read, relative to root
        exclude = self.root / ".git" / "info" / "exclude"
        self.info_exclude = self._read(exclude) if exclude.is_file() else []

    def _read(self, path: Path) -> list[Pattern]:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        self.files.append(path.relative_to(self.root).as_posix())
        return compile_patterns(text.splitlines())

    def load(self, folder_rel: str) -> None:
        f = self.root / folder_rel / ".gitignore"
        if f.is_file():
            rules = self._read(f)
            if rules:
                self.rules[folder_rel] = rules

    def ignored(self, rel: str, is_dir: bool) -> bool:
        verdict = decide(self.info_exclude, rel, is_dir)
        parts = rel.split("/")
        for depth in range(len(parts)):
            base = "/".join(parts[:depth])
            if base in self.rules:
                verdict = decide(self.rules[base], "/".join(parts[depth:]), is_dir, verdict)
        return bool(verdict)
