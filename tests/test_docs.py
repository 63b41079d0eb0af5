"""The code blocks of the README and of the docs below run as written, in order, in a fresh working directory.

```python blocks run as scripts (each on its own: every block is complete); a block whose first line is
`# file: PATH` is written to PATH instead (a template file that later blocks use). ```bash blocks run as shell
scripts with this environment's `convsched` and `python` first on PATH; ```sh blocks are shown only (they
install, or run for minutes).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "docs/design.md", "docs/tuning.md", "docs/loss_delta.md"]
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)


def blocks(doc: str) -> list:
    return BLOCK.findall((ROOT / doc).read_text())


def test_the_designated_docs_have_runnable_blocks():
    for doc in DOCS:
        assert blocks(doc), f"{doc} has no ```python or ```bash block"
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    cli = [code for lang, code in blocks("README.md") if lang == "bash"]
    assert cli and all(s in cli[0] for s in ("convsched run", "python -m convsched --version", "--output"))


@pytest.mark.parametrize("doc", DOCS)
def test_doc_blocks_run(doc, tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONWARNINGS": "ignore"}
    for i, (lang, code) in enumerate(blocks(doc)):
        first = code.splitlines()[0]
        if lang == "python" and first.startswith("# file: "):
            path = tmp_path / first[len("# file: "):].strip()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code)
            continue
        script = tmp_path / f"block{i}.{'py' if lang == 'python' else 'sh'}"
        script.write_text(code)
        cmd = [sys.executable, script.name] if lang == "python" else ["bash", "-euo", "pipefail", script.name]
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{doc}, block {i} ({lang}):\n{code}\n--- stdout\n{r.stdout[-3000:]}\n" \
                                  f"--- stderr\n{r.stderr[-3000:]}"


def _code_lines(text: str) -> list:
    return [line for line in text.splitlines() if line.strip()]


def test_the_readme_custom_layer_is_the_example_one():
    """benchmarks/call_overhead.py times examples/pnorm_pool.py as 'the p-norm pooling written from the README'."""
    (code,) = [c for lang, c in blocks("README.md") if lang == "python" and "class PNormPool2d" in c]
    example = (ROOT / "examples" / "pnorm_pool.py").read_text()
    start, end = "@dataclass(frozen=True)", "        stage.parallel(\"oh\")\n"
    shown = code[code.index(start): code.index(end) + len(end)]
    kept = example[example.index(start): example.index(end) + len(end)]
    assert _code_lines(shown) == _code_lines(kept)
