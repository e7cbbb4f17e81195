"""The project's promises about setup: same packages everywhere, CI runs the README's command."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    return {norm(re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0]) for d in deps}


def pins(lines):
    return {norm(n): v for n, v in (line.strip().lstrip("- ").split("==") for line in lines if "==" in line and not line.lstrip().startswith("#"))}


def test_environment_yml_lists_the_pyproject_packages_at_the_constraints_versions():
    constraints = pins((ROOT / "constraints.txt").read_text().splitlines())
    env_lines = (ROOT / "environment.yml").read_text().splitlines()
    env_pins = pins(line for line in env_lines if line.startswith("    - "))
    assert set(env_pins) == pyproject_packages()
    assert {n: constraints[n] for n in env_pins} == env_pins
    assert "    - -c constraints.txt" in env_lines and "    - -e ." in env_lines


def test_constraints_pin_every_dependency_and_torch_exactly():
    constraints = pins((ROOT / "constraints.txt").read_text().splitlines())
    assert pyproject_packages() <= set(constraints)
    assert constraints["torch"] == "2.13.0"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make lab") < readme.index("## Chapters") and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: setup$", makefile, re.M) and re.search(r"^lab: setup$", makefile, re.M)


def test_readme_chapter_table_lists_every_notebook():
    readme = (ROOT / "README.md").read_text()
    for path in (ROOT / "solutions").glob("*.ipynb"):
        assert f"| {path.stem} |" in readme, f"README's chapter table lacks {path.stem}"


def test_learners_workflow_runs_the_ci_script():
    workflow = (ROOT / ".github" / "workflows" / "course.yml").read_text()
    runs = [line.split("run:", 1)[1].strip() for line in workflow.splitlines() if line.strip().startswith("run:")]
    assert runs == ["bash .ci/run"], "the learners' workflow must run exactly what CI runs"
    assert "python-version" in workflow and "cache: pip" in workflow
