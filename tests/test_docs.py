"""The README and docs/*.md name only configs that exist and link only to files and headings that exist.

Docs drift silently when a config is renamed or a section moves; these checks read every page as a
reader would follow it: each `group=name` on a command line (also `group=a,b` in a multirun) and each
name in a reference table headed by its group, and each relative link (with its #anchor).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import CONFIG_DIR, ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Config groups a page may name on a command line, as `group=name`.
GROUPS = (
    "experiment",
    "task",
    "selection",
    "model",
    "datamodule",
    "sweep",
    "trainer",
    "logger",
    "callbacks",
    "optimizer",
    "paths",
    "hydra/launcher",
)
# `group=value` (also `+group=value`), not a key inside a group (`model.pretrained=`, `~model.dropout=`).
OVERRIDE = re.compile(r"(?<![\w./])(" + "|".join(map(re.escape, GROUPS)) + r")=([^\s`'\"|()\[\]]*)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# A value that stands for a name rather than being one: `<name>`, `...`, `<task>_albert_irred`.
PLACEHOLDER = re.compile(r"[<>{}$*]|\.\.\.|…")


def prose(text: str) -> list[str]:
    """The page's lines outside fenced code blocks: where headings, links and tables are (a `# ...` in
    a bash block is a comment, not a heading)."""
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def command_line_names(text: str) -> list[tuple[str, str]]:
    """Every (group, name) a `group=name[,name...]` override in the text names, placeholders skipped."""
    names = []
    for group, value in OVERRIDE.findall(text):
        for name in value.rstrip(".,;:").split(","):
            if name and not PLACEHOLDER.search(name):
                names.append((group, name))
    return names


def table_names(lines: list[str]) -> list[tuple[str, str]]:
    """Names in reference tables: the first column of a table whose first header cell is a group
    (`model=`, `datamodule`, `experiment pair`; `` `x_irred` / `_main` `` also names `x_main`), and the
    options column of the groups table (`| group | options |`), whose rows start with the group."""
    names = []
    group = None
    for line in lines:
        if not line.startswith("|"):
            group = None
            continue
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if group is None:
            header = cells[0].strip("`").removesuffix(" pair").rstrip("=")
            group = header if header in GROUPS or cells[:2] == ["group", "options"] else ""
            continue
        if not group or set(cells[0]) <= set("-: "):
            continue
        row_group, column = (cells[0].strip("`"), cells[1]) if group == "group" else (group, cells[0])
        previous = ""
        for name in re.findall(r"`([^`]+)`", column):
            if name.startswith("_") and "_" in previous:
                name = previous.rsplit("_", 1)[0] + name
            if name in GROUPS:  # `hydra`'s row goes on with `hydra/launcher`: `local_parallel`, ...
                row_group = name
            elif not PLACEHOLDER.search(name) and "/" not in name:  # `resnet18/34/50`: an abbreviation
                names.append((row_group, name))
            previous = name
    return names


def missing_configs(text: str) -> list[str]:
    """`group=name` for every name the page mentions that has no configs/<group>/<name>.yaml."""
    # Python examples pass keyword arguments (`datamodule=data`), not config names.
    outside_python = re.sub(r"```python\n.*?```", "", text, flags=re.S)
    mentioned = command_line_names(outside_python) + table_names(prose(text))
    return sorted({f"{g}={n}" for g, n in mentioned if not (CONFIG_DIR / g / f"{n}.yaml").is_file()})


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = heading.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of all headings of a page; a repeated heading gets `-1`, `-2`, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose(page.read_text()):
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            base = anchor(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    """Relative links of the page whose file, or #heading in a markdown file, does not exist."""
    broken = []
    for target in LINK.findall("\n".join(prose(page.read_text()))):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target} (no file {linked})")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target} (no heading #{fragment} in {linked.name})")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_named_config_exists(page: Path) -> None:
    missing = missing_configs(page.read_text())
    assert not missing, f"{page.relative_to(ROOT)} names configs that do not exist: {', '.join(missing)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(ROOT)} has broken links: {'; '.join(broken)}"


def test_readme_links_every_docs_page() -> None:
    """A page in docs/ that the README does not list is a page no newcomer finds."""
    readme = (ROOT / "README.md").read_text()
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in LINK.findall(readme)}
    unlisted = [page.name for page in PAGES[1:] if page.resolve() not in linked]
    assert not unlisted, f"add these docs pages to the README's 'Read on' list: {unlisted}"


def test_checks_catch_wrong_names_and_links(tmp_path: Path) -> None:
    """The checks are only worth something if a wrong name or link fails them."""
    text = (
        "```bash\n"
        "python run.py -m selection=uniform,reducible_los seed=0,1 model=<name> experiment=...\n"
        "python run.py +model=mlpp model.pretrained=albert-base-v1 ~model.dropout\n"
        "```\n"
        "Use `datamodule=fashion_mnist` or `sweep=method`.\n\n"
        "| `model=` | what |\n|---|---|\n| `mlp` | ok |\n| `resnet19` | wrong |\n\n"
        "| experiment pair | steps |\n|---|---|\n| `qmnist_mlp_irred` / `_mian` | 1 |\n\n"
        "| group | options | notes |\n|---|---|---|\n| `logger` | `csv`, `wandb`, `neptune` | `x` |\n"
        "| `hydra` | `default`; `hydra/launcher`: `slurm_example`, `slurm` | |\n"
    )
    assert missing_configs(text) == [
        "experiment=qmnist_mlp_mian",
        "hydra/launcher=slurm",
        "logger=neptune",
        "model=mlpp",
        "model=resnet19",
        "selection=reducible_los",
        "sweep=method",
    ]
    page = tmp_path / "page.md"
    page.write_text("# A heading\n\n[ok](#a-heading) [no](#missing) [gone](x.md) [self](page.md#a-heading)\n")
    assert [link.split(" ")[0] for link in broken_links(page)] == ["#missing", "x.md"]
