"""The project documents itself, inside the repository, and the documents say what the code does."""

from __future__ import annotations

import re
import subprocess

from inference.contract.reference import DOC, render
from tests.conftest import ROOT

OUTSIDE = re.compile(r"\.\./shared|\bshared/|\b(?:API|LM|CHECKPOINTS|STYLE)\.md\b")


def test_the_api_reference_matches_the_request_models():
    text = DOC.read_text(encoding="utf-8")
    assert render(text) == text, "docs/api.md is out of date: run python -m inference.contract.reference"


def test_every_route_of_the_shim_is_in_the_api_reference():
    from api_shim.app import create_app
    from inference.settings import Settings

    documented = set(re.findall(r"^\| (?:GET|POST) \| `([^`?]+)", DOC.read_text(encoding="utf-8"), re.M))
    routes = {route.path for route in create_app(Settings()).routes if getattr(route, "include_in_schema", False)}
    assert routes <= documented, f"undocumented routes: {sorted(routes - documented)}"


def test_no_file_of_the_project_points_outside_the_repository():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    pointing = []
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.suffix not in {".py", ".md", ".sh", ".toml", ".txt", ".json", ".yml", ""}:
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        pointing += [f"{name}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
    assert not pointing, pointing


def test_the_documents_the_code_cites_exist_with_the_sections_cited():
    cited = set()
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts or ".image-smoke" in path.parts:
            continue
        cited |= set(re.findall(r"docs/(\w+\.md) section (\d+)", path.read_text(encoding="utf-8")))
    for name, section in sorted(cited):
        text = (ROOT / "docs" / name).read_text(encoding="utf-8")
        assert re.search(rf"^## {section}\.", text, re.M), f"docs/{name} has no section {section}"
