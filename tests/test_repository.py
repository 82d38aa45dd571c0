"""The repository keeps its promises: CI runs the README's test command, requirements install sdlib."""
import re
import subprocess

from helpers import ROOT


def readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\s*```bash\n(.*?)\n```", text, re.S)
    assert match, "README.md must show the test command in a ```bash block under <!-- test-command -->"
    return match.group(1).strip()


def test_ci_runs_the_readme_test_command():
    # .ci/run extracts the command with awk; run that extraction and compare.
    script = (ROOT / ".ci" / "run").read_text()
    awk = re.search(r"command=\$\(awk '(.*?)' README\.md\)", script).group(1)
    extracted = subprocess.run(["awk", awk, "README.md"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert extracted.stdout.strip() == readme_test_command()
    assert readme_test_command().endswith("pytest")


def test_requirements_install_sdlib_and_the_requested_tools():
    lines = [l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    names = {re.split(r"[<>=~ ]", l)[0].lower() for l in lines}
    assert {"torch", "torchvision", "numpy", "matplotlib", "jupyterlab", "ipywidgets", "nbval", "tqdm"} <= names
    assert "-e ." in lines
