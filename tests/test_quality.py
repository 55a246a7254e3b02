"""`python -m kerasmorph.quality` on `shapes`: rows, the reference file, distances that can fail."""

import json

import numpy as np
import pytest

from kerasmorph import quality


@pytest.mark.filterwarnings("error::RuntimeWarning")  # No NaN accuracy for absent colours.
def test_quality_rows_and_the_saved_reference(tmp_path, capsys):
    reference, rows_file = tmp_path / "reference.npy", tmp_path / "rows.json"
    argv = ["--model", "shapes", "--prompts", "2", "--seeds", "1", "--batch-size", "2"]
    argv += ["--reference-steps", "4", "--steps", "2", "4", "--schedulers", "ddim", "euler"]
    argv += ["--reference", str(reference), "--json", str(rows_file)]
    assert quality.main(argv) == 0
    rows = json.loads(rows_file.read_text())
    assert [(row["scheduler"], row["steps"]) for row in rows] == [
        ("ddim", 2),
        ("ddim", 4),
        ("euler", 2),
        ("euler", 4),
    ]
    by_key = {(row["scheduler"], row["steps"]): row for row in rows}
    # DDIM at the reference's own step count is the reference: distance 0.
    assert by_key["ddim", 4]["distance"] == 0.0
    assert by_key["ddim", 2]["distance"] > 0.01 and by_key["euler", 4]["distance"] > 0.01
    assert all(0 <= row["colour"] <= 1 and 0 <= row["shape"] <= 1 for row in rows)
    assert np.load(reference).shape == (2, 16, 16, 4)
    # A second run reads the saved reference: a changed file changes every distance.
    np.save(reference, np.load(reference) * 2)
    capsys.readouterr()
    assert quality.main([*argv[:-2], "--schedulers", "ddim", "--steps", "4"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["distance"] == pytest.approx(0.5, abs=1e-6)
    np.save(reference, np.zeros((3, 16, 16, 4), np.float32))
    with pytest.raises(ValueError, match=r"shape \(3, 16, 16, 4\)"):
        quality.main(argv)
