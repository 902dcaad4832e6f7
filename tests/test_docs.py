"""The documentation the code relies on: the pages it cites exist, and only those; the
README's test command is the one CI runs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("*.py", "*.yaml", "*.toml", "*.md", "run")


def _tracked(*patterns: str) -> list[Path]:
    """Files of the checkout (tracked or new, not ignored) matching ``patterns``."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [ROOT / p for p in out.stdout.split() if (ROOT / p).is_file()]


def test_every_cited_docs_page_exists() -> None:
    missing = []
    for path in _tracked(*SOURCES):
        for page in re.findall(r"\bdocs/([\w./-]+?\.md)\b", path.read_text(errors="replace")):
            if not (ROOT / "docs" / page).is_file():
                missing.append(f"{path.relative_to(ROOT)} cites docs/{page}")
    assert not missing, "\n".join(missing)


def test_code_cites_only_the_projects_docs() -> None:
    # documents outside the repository (spelt in pieces, so this file does not match)
    outside = re.compile(r"\b(" + "DESIGN" + r"|" + "STYLE" + r")\.md\b|\.no" + r"tes/")
    found = [
        f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
        for path in _tracked("*.py", "*.yaml", "*.toml")
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if outside.search(line)
    ]
    assert not found, "cite docs/... instead:\n" + "\n".join(found)


def test_the_readme_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1].strip()
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    assert ci in (b.strip() for b in blocks), f"README has no block running exactly: {ci}"


def test_the_readme_links_pages_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    assert links
    missing = [link for link in links if "://" not in link and not (ROOT / link).exists()]
    assert not missing, missing
