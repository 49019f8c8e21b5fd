"""eval code: held-out Python function-body lines, greedy next-line completion, BPB on code."""
from __future__ import annotations

from eval.experiments.code import pick_lines, python_documents
from eval.experiments.code_cli import main

DOC = b'''import os


def area(w, h):
    """Area of a rectangle."""
    # width times height
    result = w * h
    return result


class Box:
    def volume(self, d):
        v = self.w * self.h * d
        return v
'''


def test_lines_come_from_function_bodies():
    raw = b"int main(void) { return 0; }\n\x00" + DOC + b"\x00not python (\x00"
    docs = python_documents(raw)
    assert [d[0] for d in docs] == [1]
    items = pick_lines(docs, 100, 120, seed=0)
    targets = [it["target"].strip() for it in items]
    assert targets == [b"result = w * h", b"return result", b"v = self.w * self.h * d", b"return v"]
    for it in items:  # the prompt is the separator + everything before the line
        assert it["prompt"].startswith(b"\x00") and DOC.startswith(it["prompt"][1:])
        assert DOC[len(it["prompt"]) - 1 :].startswith(it["target"] + b"\n")
    assert len(pick_lines(docs, 2, 120, seed=0)) == 2


def test_code_end_to_end(assets, tmp_path, cli, read_report):
    m = assets["models"]["tiny-sp-fixed-p4"]
    code, stdout, err = cli(main, ["--model", m, "--finetuned", assets["models"]["tiny-sp-whitespace-p8"],
                                   "--data", assets["code"], "--lines", 3, "--max-line-bytes", 40, "--window", 64,
                                   "--threads", 1, "--out", tmp_path])
    assert code == 0, err
    r = read_report(tmp_path / "code.json")
    assert [x["role"] for x in r["models"]] == ["base", "finetuned"]
    for x in r["models"]:
        assert 0 <= x["completion"]["exact_match"] <= 1 and x["completion"]["lines"] == 3
        assert x["bpb_code"] > 0 and x["bpb_python"] > 0
    assert len(r["lines"]) == 3 and set(r["lines"][0]["outputs"]) == {"base", "finetuned"}
    assert set(r["finetuned_minus_base"]) >= {"bpb_code", "exact_match"}
    assert (tmp_path / "code.md").is_file()


def test_code_needs_python(assets, tmp_path, cli, user_error):
    code, _, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"] / "val.bin",
                              "--out", tmp_path])
    # the text corpus has one tiny Python function, so give it data with none at all
    f = tmp_path / "c.bin"
    f.write_bytes(b"int main(void) { return 0; }\n" * 50)
    code, _, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", f, "--out", tmp_path])
    user_error(code, err, "Python")
