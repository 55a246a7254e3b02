"""The notebooks: they run top to bottom on `shapes`, and the committed copies carry their outputs.

The committed notebooks are executed in full (150-frame walks), with their outputs saved, so GitHub
shows the pictures. To refresh them after editing a notebook:

    python tests/test_notebooks.py [latent_walks.ipynb image_to_image.ipynb]

The tests run a copy with the outputs stripped and a smaller workload injected after the cell
tagged "parameters" (papermill's convention: fewer steps and frames), and check the committed
copies without running them: every code cell executed, in order, without errors, from the sources
that are committed now (a hash of the code cells, written by the command above).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import re
import sys
import tempfile

import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ("latent_walks.ipynb", "image_to_image.ipynb", "textual_inversion.ipynb")
MAX_BYTES = 2_500_000  # per committed notebook (latent_walks: 1.9 MB, its GIFs 1.5 MB of it)

# What the tests run instead of the committed settings (a few minutes at most on 2 CPU cores).
QUICK = {
    "latent_walks.ipynb": "NUM_STEPS, NUM_FRAMES, NUM_LOOP_FRAMES, GRID_SIDE = 4, 12, 8, 3",
    "image_to_image.ipynb": 'NUM_STEPS, SWEEP = 8, "0.1:0.3:0.1"',
    "textual_inversion.ipynb": (
        "NUM_STEPS, NUM_IMAGES, NUM_DENOISING_STEPS, NUM_WALK_FRAMES = 40, 8, 8, 4"
    ),
}
GIFS = ["delta-walk.gif", "noise-loop.gif", "prompt-walk.gif"]
# Pictures each notebook shows: latent_walks has 3 grids and a PNG strip per GIF (GitHub shows
# PNGs; the GIFs play in Jupyter and Colab), image_to_image 5 grids, textual_inversion 4 grids
# (concept, before, after, token walk) and the loss curve.
NUM_PNGS = {
    "latent_walks.ipynb": 3 + len(GIFS),
    "image_to_image.ipynb": 5,
    "textual_inversion.ipynb": 5,
}
NUM_GIFS = {
    "latent_walks.ipynb": len(GIFS),
    "image_to_image.ipynb": 0,
    "textual_inversion.ipynb": 0,
}

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # Keras' Progbar colours


# ------------------------------------------------------------------- helpers


def _modules():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    return nbformat, nbclient


def source_hash(notebook) -> str:
    """sha256 of the code cells' sources, in order (what the saved outputs were made from)."""
    sources = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()


def parameters_index(notebook) -> int:
    """The index of the one cell tagged "parameters"."""
    found = [
        i
        for i, cell in enumerate(notebook.cells)
        if "parameters" in cell.get("metadata", {}).get("tags", [])
    ]
    assert len(found) == 1, f"expected one cell tagged 'parameters', found {len(found)}"
    return found[0]


def execute(name: str, workdir: pathlib.Path, *, quick: bool, timeout: int = 900):
    """Executes notebook `name` with its outputs stripped, in `workdir`; returns the notebook.

    `quick` injects `QUICK[name]` after the parameters cell (the committed copy stays as is).
    """
    nbformat, nbclient = _modules()
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if quick:
        injected = nbformat.v4.new_code_cell(QUICK[name])
        injected.metadata["tags"] = ["injected-parameters"]
        notebook.cells.insert(parameters_index(notebook) + 1, injected)
    client = nbclient.NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        coalesce_streams=True,  # one stream per cell, progress bars' \r and \b resolved
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    return notebook


def outputs(notebook) -> list:
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]


def count(notebook, mimetype: str) -> int:
    return sum(mimetype in o.get("data", {}) for o in outputs(notebook))


def text(notebook) -> str:
    """The notebook's printed and displayed text."""
    return "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs(notebook)
    )


def errors(notebook) -> list[str]:
    return [f"{o.ename}: {o.evalue}" for o in outputs(notebook) if o.output_type == "error"]


# --------------------------------------------------------------- the sources


@pytest.mark.parametrize("name", NAMES)
def test_one_line_switches_the_model(name):
    nbformat, _ = _modules()
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    assignments = [
        line for source in code for line in source.splitlines() if line.startswith("MODEL =")
    ]
    assert len(assignments) == 1 and assignments[0].startswith(
        'MODEL = "shapes"  # or "sd1" on a GPU'
    )
    parameters = notebook.cells[parameters_index(notebook)].source
    assert parameters.startswith('MODEL = "shapes"')
    assert 'if MODEL == "shapes":' in parameters  # sizes and prompts follow from MODEL
    explorers = [line for source in code for line in source.splitlines() if "Explorer(" in line]
    assert len(explorers) == 1
    assert "Explorer(MODEL," in explorers[0] and 'precision="auto"' in explorers[0]
    assert "verbose=False" not in "".join(code)  # progress is shown


@pytest.mark.parametrize("name", NAMES)
def test_badge_and_install_cell(name):
    nbformat, _ = _modules()
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    title, install = notebook.cells[0], notebook.cells[1]
    assert title.cell_type == "markdown" and title.source.startswith("# ")
    badge = (
        f"https://colab.research.google.com/github/kerasmorph/kerasmorph/blob/main/notebooks/{name}"
    )
    assert badge in title.source
    assert install.cell_type == "code"
    # A no-op wherever kerasmorph imports (here, and in the tests: nothing is installed).
    assert 'if importlib.util.find_spec("kerasmorph") is None:' in install.source
    assert "%pip install" in install.source


# ----------------------------------------------------- the committed outputs


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_carries_fresh_outputs(name):
    nbformat, _ = _modules()
    path = NOTEBOOKS / name
    notebook = nbformat.read(path, as_version=4)
    refresh = f"refresh it with `python tests/test_notebooks.py {name}`"
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{name} was not run top to bottom: {refresh}"
    assert not errors(notebook), f"{name} saved errors: {errors(notebook)}"
    assert not [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    saved = notebook.metadata.get("kerasmorph", {}).get("source_sha256")
    assert saved == source_hash(notebook), f"{name}'s outputs are stale: {refresh}"
    assert count(notebook, "image/png") == NUM_PNGS[name]
    assert count(notebook, "image/gif") == NUM_GIFS[name]
    assert "'preset': 'shapes'" in text(notebook)  # made with the default model (describe())
    assert path.stat().st_size < MAX_BYTES


# ----------------------------------------------------------- running them


def test_latent_walks_notebook(tmp_path):
    notebook = execute("latent_walks.ipynb", tmp_path, quick=True)
    assert not errors(notebook)
    assert count(notebook, "image/png") == NUM_PNGS["latent_walks.ipynb"]
    assert count(notebook, "image/gif") == len(GIFS)
    assert sorted(p.name for p in (tmp_path / "latent_walks_output").glob("*.gif")) == GIFS
    from PIL import Image

    with Image.open(tmp_path / "latent_walks_output" / "noise-loop.gif") as gif:
        assert gif.n_frames > 1 and gif.size == (128, 128)


def test_image_to_image_notebook(tmp_path):
    notebook = execute("image_to_image.ipynb", tmp_path, quick=True)
    assert not errors(notebook)
    assert count(notebook, "image/png") == NUM_PNGS["image_to_image.ipynb"]


def test_textual_inversion_notebook(tmp_path):
    notebook = execute("textual_inversion.ipynb", tmp_path, quick=True)
    assert not errors(notebook)
    assert count(notebook, "image/png") == NUM_PNGS["textual_inversion.ipynb"]
    assert "the reloaded token draws the same images: True" in text(notebook)
    assert (tmp_path / "tl-circle.safetensors").is_file()
    assert (tmp_path / "tl-circle.json").is_file()


# ------------------------------------------------ refreshing the committed copies


def refresh(name: str) -> pathlib.Path:
    """Executes notebook `name` in full and saves it in place with its outputs."""
    nbformat, _ = _modules()
    # The kernel's start-up noise, not the notebook's: TensorFlow's C++ lines (cuInit on a
    # machine without a GPU) and tqdm's note that ipywidgets is missing.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("PYTHONWARNINGS", "ignore:IProgress not found:Warning")
    with tempfile.TemporaryDirectory() as workdir:  # the GIFs are written there, not committed
        notebook = execute(name, pathlib.Path(workdir), quick=False, timeout=3600)
    if errors(notebook):
        raise RuntimeError(f"{name} failed: {errors(notebook)}")
    for output in outputs(notebook):
        if output.output_type == "stream":
            output.text = _ANSI.sub("", output.text)
    notebook.metadata.setdefault("kerasmorph", {})["source_sha256"] = source_hash(notebook)
    path = NOTEBOOKS / name
    nbformat.write(notebook, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=refresh.__doc__)
    parser.add_argument("names", nargs="*", default=list(NAMES), help=f"default: {NAMES}")
    names = parser.parse_args(argv).names
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        parser.error(f"unknown notebooks {unknown}; the notebooks are {NAMES}")
    for name in names:
        path = refresh(name)
        print(f"{path}: {path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
