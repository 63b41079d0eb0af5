"""Build hook (everything else is in pyproject.toml): a built package carries the repository's top-level
schedules/ (templates) and tuning_logs/ (shipped tuning records) as package data in convsched/_data/, where
convsched/paths.py finds them. The folders stay where they are in the repository; editable installs read them
there, so this copy is made for wheels (and `pip install .`) only."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA = ("schedules", "tuning_logs")


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in DATA:
            dst = Path(self.build_lib) / "convsched" / "_data" / name
            if dst.exists():
                shutil.rmtree(dst)     # a template deleted since the last build must not linger in the wheel
            shutil.copytree(ROOT / name, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithData})
