"""Corpus builder (train/corpus/): sources on tiny synthetic trees, dedup, split by document,
manifest, CLI errors.

Fast, no network, no apt: every source is pointed at files made here.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from scratchpad.errors import UserError
from scratchpad.vocab import DOCUMENT_SEPARATOR
from train.corpus import formats as F
from train.corpus.build import build_corpus, water_fill
from train.corpus.installed import main
from train.corpus.reading import Tally, clean_text
from train.corpus.store import read_manifest, verify_corpus
from train.corpus.walk import walk

REPO = Path(__file__).resolve().parents[2]
SEP = bytes([DOCUMENT_SEPARATOR])


def split_docs(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    assert data == b"" or data.endswith(SEP)
    return data.split(SEP)[:-1]


def make_code_tree(root: Path) -> None:
    """.py / .c / .rst files, with exact duplicates, a CRLF twin, a binary and a non-UTF-8 file."""
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__pycache__").mkdir()
    for i in range(40):
        body = f"def f{i}(x):\n    return x * {i} + {i * i}  # function number {i}\n" * (1 + i % 5)
        (root / "pkg" / f"m{i}.py").write_text(body)
    (root / "pkg" / "sub" / "dup_of_m3.py").write_bytes((root / "pkg" / "m3.py").read_bytes())
    (root / "pkg" / "sub" / "crlf_m4.py").write_bytes((root / "pkg" / "m4.py").read_bytes().replace(b"\n", b"\r\n"))
    (root / "pkg" / "__pycache__" / "m1.py").write_text("cached = True\n")  # skipped directory
    (root / "pkg" / "blob.py").write_bytes(b"x = 1\x00\x01\x02\n")  # binary
    (root / "pkg" / "latin1.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))  # undecodable
    (root / "pkg" / "empty.py").write_text("\n\n")
    (root / "src").mkdir()
    for i in range(20):
        (root / "src" / f"f{i}.c").write_text(f"int f{i}(int x)\n{{\n\treturn x + {i};\n}}\n")
    (root / "src" / "f0_copy.h").write_text((root / "src" / "f0.c").read_text())
    (root / "docs").mkdir()
    for i in range(10):
        (root / "docs" / f"page{i}.rst").write_text(f"Page {i}\n======\n\nSome *text* about topic {i}.\n")


def test_clean_text():
    assert clean_text(b"a\r\nb\rc  \n\n\n") == b"a\nb\nc\n"
    assert clean_text(b"\xef\xbb\xbfhello") == b"hello\n"
    assert clean_text(b"x\x00y") is None
    assert clean_text("x\x00y") == b"xy\n"  # decoded text: NUL dropped, not refused
    assert clean_text(b"\xff\xfe") is None
    assert clean_text(b" \n\t\n") is None
    tally = Tally()
    clean_text(b"\xff", tally, "a.txt")
    clean_text(b"\x00", tally, "b.bin")
    clean_text(b"\n", tally)
    assert tally.skipped_dict() == {"binary": {"count": 1, "examples": ["b.bin"]}, "empty": {"count": 1, "examples": []},
                                    "undecodable": {"count": 1, "examples": ["a.txt"]}}


def test_tree_documents_dedup_and_cleaning(tmp_path):
    make_code_tree(tmp_path)
    st = Tally()
    docs = list(F.tree_documents(tmp_path / "pkg", (".py",), st))
    assert st.skipped == {"binary": 1, "undecodable": 1, "empty": 1, "generated_build_folder": 1}
    assert st.examples["binary"] == ["blob.py"] and st.examples["generated_build_folder"] == ["__pycache__/"]
    assert all(b"\r" not in d and SEP not in d for d in docs)
    assert not any(b"cached = True" in d for d in docs)
    # m3 + its copy + CRLF twin of m4 -> after cleaning there are 2 duplicates among the 42 documents.
    assert len(docs) == 42 and len(set(docs)) == 40


def test_installed_trees_walk(tmp_path):
    """The one walker with the installed sources' selection: suffixes, no hidden or cache folders,
    no symbolic links, an avoided folder walked on its own; every skip recorded with its reason."""
    for rel in ("a.py", "b.txt", ".hidden/h.py", "site/s.py", "sub/c.py", "sub/__pycache__/c.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"# {rel}\n")
    os.symlink("sub", tmp_path / "link")
    os.symlink("a.py", tmp_path / "z.py")
    tally = Tally()
    found = [rel for rel, _ in walk(tmp_path, F.installed_selection((".py",), [tmp_path / "site"]), tally)]
    assert found == ["a.py", "sub/c.py"]
    assert tally.skipped_dict() == {
        "generated_build_folder": {"count": 1, "examples": ["sub/__pycache__/"]},
        "hidden_folder": {"count": 1, "examples": [".hidden/"]},
        "symlink": {"count": 2, "examples": ["link", "z.py"]},
        "walked_separately": {"count": 1, "examples": ["site/"]},
    }
    assert list(F.python_code_documents([tmp_path, tmp_path / "site"])) == [b"# a.py\n", b"# sub/c.py\n", b"# site/s.py\n"]


def build(tmp_path, out_name="out", **kw):
    t = tmp_path / "tree"
    if not t.exists():
        make_code_tree(t)
    sources = {
        "python": F.tree_documents(t / "pkg", (".py",)),
        "c": F.tree_documents(t / "src", (".c", ".h")),
        "rst": F.tree_documents(t / "docs", (".rst",)),
    }
    kw.setdefault("val_fraction", 0.2)
    return build_corpus(sources, tmp_path / out_name, **kw), tmp_path / out_name


def test_build_corpus_split_dedup_manifest(tmp_path):
    m, out = build(tmp_path, seed=3)
    train, val = split_docs(out / "train.bin"), split_docs(out / "val.bin")
    assert val and train
    # Dedup: every document once overall.
    assert len(set(train + val)) == len(train) + len(val) == 40 + 20 + 10
    # Split by document: no document in both; no val document's bytes inside train.bin.
    train_bytes = (out / "train.bin").read_bytes()
    assert not set(train) & set(val)
    for d in val:
        assert d not in train_bytes
    # Manifest matches the files.
    assert read_manifest(out) == m
    for split in ("train", "val"):
        info = m["files"][split]
        data = (out / f"{split}.bin").read_bytes()
        assert info["sha256"] == hashlib.sha256(data).hexdigest()
        assert info["bytes"] == len(data)
    assert m["sources"]["python"]["duplicates_dropped"] == 2
    assert m["sources"]["c"]["duplicates_dropped"] == 1
    assert sum(s["documents"] for s in m["sources"].values()) == m["total_documents"] == 70
    assert sum(s["val_bytes"] for s in m["sources"].values()) == m["files"]["val"]["bytes"]
    assert m["format"]["document_separator"] == 0
    assert verify_corpus(out)
    assert np.fromfile(out / "val.bin", dtype=np.uint8).tobytes() == SEP.join(val) + SEP
    # No temporaries left behind.
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "train.bin", "val.bin"]


def test_build_is_deterministic_and_split_stable_across_sources(tmp_path):
    m1, out1 = build(tmp_path, "a", seed=7)
    m2, out2 = build(tmp_path, "b", seed=7)
    for split in ("train", "val"):
        assert (out1 / f"{split}.bin").read_bytes() == (out2 / f"{split}.bin").read_bytes()
    # Without the "c" source, the other sources' documents keep their split.
    t = tmp_path / "tree"
    build_corpus({"python": F.tree_documents(t / "pkg", (".py",)), "rst": F.tree_documents(t / "docs", (".rst",))},
                 tmp_path / "c", val_fraction=0.2, seed=7)
    val_all, val_sub = set(split_docs(out1 / "val.bin")), set(split_docs(tmp_path / "c" / "val.bin"))
    c_docs = set(F.tree_documents(t / "src", (".c", ".h")))
    assert val_sub == val_all - c_docs
    # Another seed, another split.
    m3, out3 = build(tmp_path, "d", seed=8)
    assert set(split_docs(out3 / "val.bin")) != val_all


def test_nul_stripped_and_val_never_empty(tmp_path):
    docs = {"a": [b"one\x00two", b"three", b"four"]}
    m = build_corpus(docs, tmp_path, val_fraction=0.001, seed=0)
    assert m["files"]["val"]["documents"] == 1
    all_docs = split_docs(tmp_path / "train.bin") + split_docs(tmp_path / "val.bin")
    assert sorted(all_docs) == [b"four", b"onetwo", b"three"]
    assert m["sources"]["a"]["nul_stripped_documents"] == 1


def test_max_bytes_cap_is_shared_and_sampled(tmp_path):
    big = [f"big document {i} ".encode() * 20 for i in range(200)]  # ~64 KB
    small = [f"small {i}".encode() for i in range(10)]  # ~80 B
    m = build_corpus({"big": big, "small": small}, tmp_path / "x", val_fraction=0.1, seed=1, max_bytes=10_000)
    assert m["total_bytes"] <= 10_000
    assert m["sources"]["small"]["documents"] == 10  # the small source keeps everything
    assert m["sources"]["big"]["cap_bytes"] == 10_000 - m["sources"]["small"]["available_bytes"]
    assert 0 < m["sources"]["big"]["documents"] < 200
    # A larger cap keeps a superset (sampling by key, not by arrival order).
    m2 = build_corpus({"big": list(reversed(big)), "small": small}, tmp_path / "y", val_fraction=0.1, seed=1,
                      max_bytes=20_000)
    a = set(split_docs(tmp_path / "x" / "train.bin") + split_docs(tmp_path / "x" / "val.bin"))
    b = set(split_docs(tmp_path / "y" / "train.bin") + split_docs(tmp_path / "y" / "val.bin"))
    assert a < b and m2["total_bytes"] <= 20_000


def test_water_fill():
    assert water_fill({"a": 10, "b": 100, "c": 100}, 70) == {"a": 10, "b": 30, "c": 30}
    assert water_fill({"a": 10, "b": 20}, None) == {"a": 10, "b": 20}
    assert water_fill({"a": 10, "b": 20}, 1000) == {"a": 10, "b": 20}
    caps = water_fill({"a": 100, "b": 100, "c": 100}, 100)
    assert sum(caps.values()) == 100 and max(caps.values()) - min(caps.values()) <= 1


def test_no_documents_is_user_error(tmp_path):
    with pytest.raises(UserError):
        build_corpus({}, tmp_path)
    with pytest.raises(UserError):
        build_corpus({"a": [b"", b"\x00"]}, tmp_path)


def test_gcide_reader(tmp_path):
    text = (
        "00-database-info\n   licence text\n\n"
        "Apple \\Ap\"ple\\, n. <i>fruit</i>\n   The fruit. [Obs.]\n   [1913 Webster]\n\n"
        "   2. A tree.\n   [1913 Webster] A note.\n\n"
        "Banana \\Ba*na\"na\\, n.\n   Another fruit.\n   [WordNet 1.5]\n"
    )
    p = tmp_path / "mini.dict.dz"
    with gzip.open(p, "wb") as f:
        f.write(text.encode())
    docs = list(F.gcide_documents(p))
    assert len(docs) == 2
    assert docs[0].startswith(b"Apple") and b"2. A tree." in docs[0] and b"[Obs.]" in docs[0]
    assert b"Webster" not in docs[0] and b"<i>" not in docs[0] and b"A note." in docs[0]
    assert docs[1] == b"Banana \\Ba*na\"na\\, n.\n   Another fruit.\n"
    # With a dictd index the ranges come from it (header entries skipped).
    raw = text.encode()
    b64 = lambda n: "".join(F.DICT_B64[(n >> s) & 63] for s in (12, 6, 0)).lstrip("A") or "A"
    o = raw.index(b"Banana")
    (tmp_path / "mini.index").write_text(f"00-database-info\tA\t{b64(30)}\nBanana\t{b64(o)}\t{b64(len(raw) - o)}\n")
    assert list(F.gcide_documents(p)) == [docs[1]]


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_linux_reader_tar_and_dir(tmp_path):
    files = {
        "Documentation/admin/index.rst": b"Admin\n=====\n\nHello.\n",
        "Documentation/notes.txt": b"Some notes.\n",
        "Documentation/translations/zh_CN/index.rst": "\u4f60\u597d\n".encode(),
        "Documentation/conf.py": b"x = 1\n",
        "kernel/fork.c": b"int fork(void)\n{\n\treturn 0;\n}\n",
        "include/linux/fork.h": b"int fork(void);\n",
        "drivers/gpu/regs.h": b"#define REG_A 0x1\n" * 2000,  # generated register map
    }
    tarpath = tmp_path / "linux-source-6.12.tar.xz"
    with tarfile.open(tarpath, "w:xz") as tar:
        for name, data in files.items():
            _tar_add(tar, "linux-source-6.12/" + name, data)
    tree = tmp_path / "linux-source-6.12"
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    for source in (tarpath, tree):
        st = Tally()
        assert sorted(F.linux_documents(source, "docs")) == [b"Admin\n=====\n\nHello.\n", b"Some notes.\n"]
        assert sorted(F.linux_documents(source, "c", st)) == [b"int fork(void)\n{\n\treturn 0;\n}\n", b"int fork(void);\n"]
        assert st.skipped_dict() == {"generated_register_map": {"count": 1, "examples": ["drivers/gpu/regs.h"]}}


def test_kjv_and_shakespeare_readers(tmp_path):
    verses = [("Genesis", 1, 1, "In the beginning."), ("Genesis", 1, 2, "And the earth."), ("Genesis", 2, 1, "Thus.")]
    p = tmp_path / "kjv.jsonl"
    p.write_text("".join(json.dumps({"book": b, "chapter": c, "verse": v, "text": t}) + "\n" for b, c, v, t in verses))
    assert list(F.kjv_documents(p)) == [b"Genesis 1\n\n1 In the beginning.\n2 And the earth.\n", b"Genesis 2\n\n1 Thus.\n"]
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "hamlet_gut.txt").write_text("Hamlet, modern\n")
    (texts / "hamlet_gut_f.txt").write_text("Hamlet, folio\n")
    (texts / "metadata.txt").write_text("[hamlet_gut]\n")
    st = Tally()
    assert list(F.shakespeare_documents(texts, st)) == [b"Hamlet, modern\n"]
    assert st.skipped_dict() == {"folio_duplicate": {"count": 1, "examples": ["hamlet_gut_f.txt"]}}


def fake_root(tmp_path: Path) -> Path:
    """A fake filesystem with the apt sources of the text corpus."""
    root = tmp_path / "root"
    pod = root / "usr/share/perl/5.36.0/pod"
    pod.mkdir(parents=True)
    for i in range(6):
        (pod / f"perl{i}.pod").write_text(f"=head1 NAME\n\nperl{i} - page {i}\n\n=cut\n")
    srcs = root / "usr/share/doc/python3.11/html/_sources/library"
    srcs.mkdir(parents=True)
    for i in range(6):
        (srcs / f"mod{i}.rst.txt").write_text(f":mod:`mod{i}`\n=========\n\nModule {i}.\n")
    return root


def run_main(argv, capsys):
    from scratchpad.errors import run_cli

    rc = run_cli(main, argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_builds_and_is_idempotent(tmp_path, capsys):
    root = fake_root(tmp_path)
    out = tmp_path / "corpus"
    argv = ["text", "--out", str(out), "--root", str(root), "--no-install", "--val-fraction", "0.3",
            "--cache-dir", str(tmp_path / "cache")]
    rc, stdout, stderr = run_main(argv, capsys)
    assert rc == 0, stderr
    assert "source gcide not found" in stderr  # missing sources are warnings
    m = read_manifest(out)
    assert set(m["sources"]) == {"perl-pod", "python-docs"}
    assert m["sources"]["perl-pod"]["documents"] == 6
    assert m["command"].startswith("scratchpad data build text --out")
    assert "gcide" in m["request"]["skipped_sources"]
    before = {p: (out / p).stat().st_mtime_ns for p in ("train.bin", "val.bin", "manifest.json")}
    rc, stdout, stderr = run_main(argv, capsys)
    assert rc == 0 and "up to date" in stdout
    assert before == {p: (out / p).stat().st_mtime_ns for p in ("train.bin", "val.bin", "manifest.json")}
    # --force rebuilds to identical bytes.
    train = (out / "train.bin").read_bytes()
    rc, stdout, stderr = run_main(argv + ["--force"], capsys)
    assert rc == 0 and "up to date" not in stdout and (out / "train.bin").read_bytes() == train
    # A changed input is noticed.
    (root / "usr/share/perl/5.36.0/pod/perl0.pod").write_text("=head1 NAME\n\nchanged\n")
    rc, stdout, stderr = run_main(argv, capsys)
    assert rc == 0 and "up to date" not in stdout
    # A damaged output is noticed.
    (out / "val.bin").write_bytes(b"junk")
    rc, stdout, stderr = run_main(argv, capsys)
    assert rc == 0 and "up to date" not in stdout and verify_corpus(out)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["poetry", "--out", "{out}"], "invalid choice"),
        (["text", "--out", "{out}", "--max-mb", "0"], "--max-mb"),
        (["text", "--out", "{out}", "--max-mb", "-3"], "--max-mb"),
        (["text", "--out", "{out}", "--val-fraction", "1"], "--val-fraction"),
        (["text", "--out", "{out}", "--val-fraction", "0"], "--val-fraction"),
        (["text", "--out", "{out}", "--val-fraction", "abc"], "--val-fraction"),
        (["text"], "--out"),
        (["text", "--out", "{file}/sub"], "cannot write"),
        (["text", "--out", "{out}", "--source", "nope"], "unknown text source"),
        (["code", "--out", "{out}", "--root", "{empty}", "--no-install"], "no code source found"),
    ],
)
def test_cli_bad_input_one_line(tmp_path, capsys, args, needle):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    fill = {"out": str(tmp_path / "o"), "file": str(tmp_path / "afile"), "empty": str(tmp_path / "empty")}
    argv = [a.format(**fill) for a in args]
    from eval.cli import main as scratchpad_main

    rc = scratchpad_main(["data", "build", *argv])
    cap = capsys.readouterr()
    assert rc == 2
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], cap.err
    assert "Traceback" not in cap.err


def test_module_runs_as_script(tmp_path):
    r = subprocess.run([sys.executable, "-m", "train.corpus.installed", "text", "--out", str(tmp_path), "--max-mb", "0"],
                       cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "train.corpus.installed", "--help"], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0 and "--max-mb" in r.stdout
