"""Packaging metadata: what pip and setuptools read from pyproject.toml."""
import tomllib
from pathlib import Path

from packaging.licenses import canonicalize_license_expression

ROOT = Path(__file__).resolve().parents[1]


def test_license_is_an_spdx_expression():
    # a TOML table ({text = ...}) is deprecated by setuptools and warned about on every install
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert isinstance(project["license"], str), project["license"]
    assert canonicalize_license_expression(project["license"]) == "Apache-2.0"


def test_torch_pin_is_the_cpu_build_this_project_measured():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.13.0" in deps
