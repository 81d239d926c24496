"""The package layout: a small top level, and the README's layout section naming what is there."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "detkit"


def layout_section() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"## Layout\n\n```\n(.*?)```", text, re.S)
    assert match, "README.md has no '## Layout' section with a code block"
    return match.group(1)


def test_top_level_holds_at_most_six_modules():
    # __init__ and __main__ are the package's own files, not modules of it
    modules = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(modules) <= 6, f"detkit/ top level holds {len(modules)} modules: {modules}"


def test_readme_layout_lists_every_top_level_entry_and_nothing_missing():
    section = layout_section()
    listed = set(re.findall(r"^detkit/([\w.]+/?)", section, re.M))
    present = {p.name + "/" for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    present |= {p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    assert listed == present, f"README lists {sorted(listed - present)} not in detkit/, misses {sorted(present - listed)}"


def test_readme_layout_names_only_existing_configs_and_tools():
    section = layout_section()
    configs = set(re.findall(r"([\w]+\.yaml)", section))
    assert configs == {p.name for p in (ROOT / "configs").glob("*.yaml")}
    tools_line = section[section.index("tools/"):]
    for name in re.findall(r"\b(bench_\w+|benchmark|accuracy|deploy_report)\b", tools_line):
        assert (ROOT / "tools" / f"{name}.py").exists(), name
