"""The house rules: one-way imports (import-linter contracts in pyproject.toml), templates that import only the
schedule vocabulary, imports at the top of modules. Each rule is also shown to catch a planted violation."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "convsched"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = 5

needs_import_linter = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed "
                                         "(pip install -e '.[test]')")


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess:
    """Run lint-imports with the project's contracts on the `convsched` package found in `package_parent`."""
    env = {"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(LINT_IMPORTS), str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=package_parent, env=env, capture_output=True, text=True, timeout=300)


@needs_import_linter
def test_the_package_keeps_every_import_contract():
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Contracts: {CONTRACTS} kept, 0 broken." in r.stdout


# (file to plant in, the line planted, the contract it must break, the arrow the report must name)
PLANTS = [
    ("layers/base.py", "from ..kernel import Kernel", "One-way layers", "convsched.layers.base -> convsched.kernel"),
    ("schedule/steps.py", "import tvm.tirx", "Only the backend imports TVM", "convsched.schedule.steps -> tvm"),
    ("layers/conv.py", "from ..backend import binary", "never its internals",
     "convsched.layers.conv -> convsched.backend.binary"),
    ("records.py", "import convsched", "imports its face", "convsched.records -> convsched"),
    ("kernel/arrays.py", "from . import compiler", "No import circles", ".arrays -> .compiler"),
]


@needs_import_linter
@pytest.mark.parametrize("path,line,contract,arrow", PLANTS, ids=[p[2] for p in PLANTS])
def test_a_planted_forbidden_arrow_breaks_its_contract(tmp_path, path, line, contract, arrow):
    shutil.copytree(PACKAGE, tmp_path / "convsched", ignore=shutil.ignore_patterns("__pycache__"))
    f = tmp_path / "convsched" / path
    f.write_text(f.read_text() + f"\n{line}  # planted by the test\n")
    r = lint_imports(tmp_path)
    assert r.returncode != 0, r.stdout
    # one arrow may break several contracts (an upward import also closes a circle); its own is among them
    report = " ".join(r.stdout.split())              # contract names wrap across lines in the summary
    assert f"{contract}" in report and "BROKEN" in report, r.stdout
    broken = report.split("Contracts:")[0]
    assert any(contract in part for part in broken.split("BROKEN")[:-1]), r.stdout
    assert arrow in r.stdout, r.stdout


# -------------------------------------------------------------------------------------------- templates
# Templates are files, not package modules, so import-linter cannot see them: they are checked here.
TEMPLATE_IMPORT_EXCEPTIONS: set = set()


def template_imports_outside_vocabulary(source: str) -> list[str]:
    """Modules a template imports that are neither the schedule vocabulary nor the standard library."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = ["." * node.level + (node.module or "")]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if name == "convsched.schedule" or name.startswith("convsched.schedule."):
                continue
            if top in sys.stdlib_module_names and top != "convsched":
                continue
            bad.append(name)
    return bad


def _templates():
    for base in (ROOT / "schedules", ROOT / "examples" / "schedules"):
        for p in sorted(base.rglob("*.py")):
            yield base, p


@pytest.mark.parametrize("base,path", list(_templates()), ids=lambda x: x.name if isinstance(x, Path) else "")
def test_templates_import_only_the_schedule_vocabulary(base, path):
    rel = path.relative_to(base).as_posix()
    bad = [m for m in template_imports_outside_vocabulary(path.read_text())
           if (rel, m) not in TEMPLATE_IMPORT_EXCEPTIONS]
    assert not bad, f"{path} imports {bad}; templates import only convsched.schedule (and the standard library)"


def test_the_template_check_catches_other_imports():
    assert template_imports_outside_vocabulary("from convsched.schedule import divisors\nimport math\n") == []
    assert template_imports_outside_vocabulary("from convsched.graph import stages_of\n") == ["convsched.graph"]
    assert template_imports_outside_vocabulary("import convsched as cs\nimport numpy\n") == ["convsched", "numpy"]


# ----------------------------------------------------------------------------------------------- imports
def imports_inside_functions(source: str) -> list[tuple[int, str]]:
    """(line, text) of every import inside a function that does not say why on its own line (a comment)."""
    lines = source.splitlines()
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)) and "#" not in lines[sub.lineno - 1]:
                    out.append((sub.lineno, lines[sub.lineno - 1].strip()))
    return sorted(set(out))


# (none: target.py asks LLVM through the probe convsched.backend.cpu registers, not by importing the backend)
FUNCTION_IMPORT_EXCEPTIONS: set = set()


def test_imports_sit_at_the_top_of_modules_unless_a_comment_says_why():
    found = []
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE).as_posix()
        for line, text in imports_inside_functions(p.read_text()):
            if rel not in FUNCTION_IMPORT_EXCEPTIONS:
                found.append(f"convsched/{rel}:{line}: {text}")
    assert not found, "imports inside functions without a stated reason:\n" + "\n".join(found)


def test_the_import_check_catches_a_hidden_import():
    src = "def f():\n    import numpy\n    import json  # optional: why\n"
    assert imports_inside_functions(src) == [(2, "import numpy")]


def _long_files_without_a_reason(root, limit=400):
    """Source files over `limit` lines whose opening comment or docstring does not say why they are long."""
    out = []
    for path in sorted(p for d in ("convsched", "schedules", "examples") for p in (root / d).rglob("*")
                       if p.suffix in (".py", ".c") and "__pycache__" not in p.parts):
        lines = path.read_text().splitlines()
        if len(lines) > limit and not any("over 400 lines" in ln.lower() for ln in lines[:60]):
            out.append(str(path.relative_to(root)))
    return out


def test_files_over_400_lines_say_why_at_their_top():
    assert _long_files_without_a_reason(ROOT) == []


def test_the_length_check_catches_a_long_file(tmp_path):
    (tmp_path / "convsched").mkdir()
    (tmp_path / "convsched" / "long.py").write_text('"""A module."""\n' + "x = 1\n" * 401)
    (tmp_path / "convsched" / "long_ok.py").write_text('"""A module. Over 400 lines: a table."""\n' + "x = 1\n" * 401)
    assert _long_files_without_a_reason(tmp_path) == ["convsched/long.py"]
