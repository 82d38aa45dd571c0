"""Hosted notebooks (Google Colab and the like), where the course is not installed: one setting, the repository
address in pyproject.toml ([project.urls] Repository), and what is derived from it:

- every lesson's first code cell begins with a guarded install: when `import sdlib` fails, it runs
  `%pip install git+<repository>` (or the local copy that $SDLIB_INSTALL_FROM names), and MNIST then downloads
  on first use as usual;
- the README's lesson map has an "Open in Colab" badge per lesson.

    python site/hosted.py          # rewrite both from pyproject.toml (after changing the address)

tests/test_site_hosted.py checks that the notebooks and the README agree with the setting.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LESSON_GLOB = "[0-9][0-9]*_*.ipynb"
INSTALL_ENV = "SDLIB_INSTALL_FROM"
GUARD_START = "try:  # a hosted notebook (Colab, ...) without the course installs it first"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


def repository_url() -> str:
    """The course's repository, the one setting in pyproject.toml [project.urls] Repository."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib  # Python 3.11+
        url = tomllib.loads(text)["project"].get("urls", {}).get("Repository")
    except ImportError:
        section = re.search(r"^\[project\.urls\]\n(.*?)(?=^\[|\Z)", text, flags=re.M | re.S)
        found = section and re.search(r'^Repository\s*=\s*"([^"]+)"', section[1], flags=re.M)
        url = found[1] if found else None
    if not url:
        raise SystemExit('pyproject.toml has no [project.urls] Repository = "https://github.com/OWNER/NAME"')
    return url.rstrip("/")


def colab_url(notebook: str, repo: str | None = None) -> str:
    """The address that opens notebooks/NOTEBOOK.ipynb of the repository in Google Colab."""
    repo = repo or repository_url()
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+)", repo)
    if not match:
        raise ValueError(f"the repository address {repo!r} is not https://github.com/OWNER/NAME")
    return f"https://colab.research.google.com/github/{match[1]}/{match[2]}/blob/main/notebooks/{notebook}.ipynb"


def badge(notebook: str, repo: str | None = None) -> str:
    return f"[![Open in Colab]({BADGE_IMAGE})]({colab_url(notebook, repo)})"


def install_guard(repo: str | None = None) -> str:
    """The lines that begin every lesson's first code cell."""
    repo = repo or repository_url()
    return (f"{GUARD_START}\n"
            f"    import sdlib\n"
            f"except ImportError:  # (${INSTALL_ENV} may name a local copy of the course to install instead)\n"
            f"    import os\n"
            f"    source = os.environ.get(\"{INSTALL_ENV}\", \"git+{repo}\")\n"
            f"    get_ipython().run_line_magic(\"pip\", f'install -q \"{{source}}\"')   # %pip install ...\n"
            f"    import importlib\n"
            f"    importlib.invalidate_caches()  # so this kernel sees the package it has just installed\n")


def split_guard(source: str) -> tuple[str, str]:
    """(the guard at the start of a first code cell, or "", the rest of the cell)."""
    if not source.startswith(GUARD_START):
        return "", source
    lines = source.splitlines(keepends=True)
    end = 1
    while end < len(lines) and (lines[end].startswith((" ", "except")) and lines[end].strip()):
        end += 1
    return "".join(lines[:end]), "".join(lines[end:])


def sync_notebook(path: Path, repo: str | None = None) -> bool:
    """Make the first code cell of one notebook begin with the guard (load, change, write in one go)."""
    text = path.read_text()
    nb = json.loads(text)
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    source = "".join(cell["source"])
    _, rest = split_guard(source)
    new_source = install_guard(repo) + rest
    if new_source == source:
        return False
    cell["source"] = new_source.splitlines(keepends=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


def sync_readme(repo: str | None = None) -> bool:
    """Give every row of the README's lesson map its Colab badge, in a last column "open"."""
    path = ROOT / "README.md"
    text = path.read_text()
    names = [p.stem for p in sorted((ROOT / "notebooks").glob(LESSON_GLOB))]
    out = []
    for line in text.splitlines(keepends=True):
        row = line.rstrip("\n")
        if row.startswith("| # | notebook |") and not row.endswith("| open |"):
            row += " open |"
        elif row.startswith("| # | notebook |"):
            pass
        elif row.startswith("|---|---|") and out and out[-1].startswith("| # | notebook |"):
            if row.count("|") < out[-1].count("|"):
                row += "---|"
        else:
            name = next((n for n in names if re.match(rf"\| [0-9a-z]+ \| `{re.escape(n)}`", row)), None)
            if name:
                row = re.sub(r" \[!\[Open in Colab\]\([^)]*\)\]\([^)]*\) \|$", "", row)
                row += f" {badge(name, repo)} |"
        out.append(row + ("\n" if line.endswith("\n") else ""))
    new = "".join(out)
    if new != text:
        path.write_text(new)
        return True
    return False


def main() -> int:
    repo = repository_url()
    for path in sorted((ROOT / "notebooks").glob(LESSON_GLOB)):
        print(f"{path.name}: {'updated' if sync_notebook(path, repo) else 'up to date'}")
    print(f"README.md: {'updated' if sync_readme(repo) else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
