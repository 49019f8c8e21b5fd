"""The README's promises that code can check: its Python example runs, its links resolve."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_use_it_from_python_example_runs(tmp_path, capsys):
    section = README.split("## Use it from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code.replace("/tmp/sp-model", str(tmp_path / "sp-model")), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("torch.Size([1, 27, 256])")
    assert (tmp_path / "sp-model" / "config.json").is_file()


def test_local_links_exist():
    for target in re.findall(r"\]\(([^)#]+)\)", README) + re.findall(r"`(\.\./[^`]+)`", README):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target
