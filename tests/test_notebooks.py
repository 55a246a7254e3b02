"""The notebooks run top to bottom on the `tiny` preset."""

import pathlib

import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"


def execute(name, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert 'MODEL = "tiny"' in notebook.cells[1].source  # The one line to change.
    client = nbclient.NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    return notebook


def test_latent_walks_notebook(tmp_path):
    notebook = execute("latent_walks.ipynb", tmp_path)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [
        o for o in outputs if "image/png" in o.get("data", {}) or "image/gif" in o.get("data", {})
    ]
    assert len(images) >= 6  # 3 grids + 3 GIFs.
    gifs = sorted(p.name for p in (tmp_path / "latent_walks_output").glob("*.gif"))
    assert gifs == ["cows-loop.gif", "doggo-and-fruit-150.gif", "eiffel-tower-walk.gif"]


def test_image_to_image_notebook(tmp_path):
    notebook = execute("image_to_image.ipynb", tmp_path)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) == 5
