"""tutorial.ipynb: committed without outputs, and it runs end to end in QUICK mode (nbclient)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT

NOTEBOOK = ROOT / "tutorial.ipynb"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def test_committed_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    parameters = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1 and "QUICK = False" in parameters[0].source


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="needs Fashion-MNIST in /usr/share/datasets (.ci/setup)")
def test_runs_in_quick_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    # One torch thread in the kernel: on a CPU shared with other jobs, several threads spinning for
    # the same cores made this notebook 4x slower (226 s against 58 s on a loaded 2-core machine).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Papermill's way: a cell right after the parameters cell overrides them.
    position = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell(f"QUICK = True\nOUTPUT = {str(tmp_path)!r}")
    notebook.cells.insert(position + 1, injected)
    NotebookClient(notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()

    summary = json.loads((tmp_path / "targets" / "analysis" / "summary.json").read_text())
    assert list(summary["methods"]) == ["uniform", "loss", "reducible_loss"]
    noisy = {name: m["noisy_selected_fraction"]["mean"] for name, m in summary["methods"].items()}
    # Loss selection chases the corrupted labels, RHO-LOSS avoids them (pool: 10% corrupted).
    assert noisy["loss"] > noisy["uniform"] > noisy["reducible_loss"]
    for png, pdf in summary["figures"].values():
        assert Path(png).stat().st_size > 10_000 and Path(pdf).is_file()
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    # The noisy-points grid and the four analysis figures were displayed.
    assert len(images) == 1 + len(summary["figures"]) == 5
    printed = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "corrupted (pool: 10%)" in printed
