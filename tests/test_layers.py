"""The layering of kerasmorph, enforced: which module may import which.

Every module of the package is parsed with `ast` (function-level imports
included) and each import of a kerasmorph module or of a heavy library is
checked against the table below (the layer table of the README's Layout
section). A layer may import layers below it and its own layer, except where
`FORBIDDEN` says otherwise; nothing imports the applications (L7).
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "kerasmorph"

# Module prefix -> layer. The longest matching prefix decides.
LAYERS = {
    # L0: constants, validators, numpy / Pillow / matplotlib / imageio work.
    "kerasmorph.constants": 0,
    "kerasmorph._checks": 0,
    "kerasmorph.errors": 0,
    "kerasmorph.limits": 0,
    "kerasmorph.paths": 0,
    "kerasmorph.locks": 0,
    "kerasmorph.atomic": 0,
    "kerasmorph.schedules": 0,
    "kerasmorph.interpolation": 0,
    "kerasmorph.images": 0,
    "kerasmorph.export": 0,
    "kerasmorph.plotting": 0,
    "kerasmorph.merging": 0,
    "kerasmorph.metrics": 0,  # Smoothness of a morph from its frames (SSIM in numpy).
    "kerasmorph.shapes.data": 0,
    "kerasmorph.installs": 0,  # How kerasmorph was installed; the pip hints.
    "kerasmorph.licences": 0,  # The weights' licence notice, shown once.
    "kerasmorph.noise_statistics": 0,  # AdaIN of interpolated noise.
    # L1: backend selection, precision plans, weight files and manifests.
    "kerasmorph.backend": 1,
    "kerasmorph.devices": 1,
    "kerasmorph.weights": 1,
    "kerasmorph.compile_cache": 1,  # XLA's persistent cache: its folder, cap and checks.
    "kerasmorph.progress": 1,  # Keras' Progbar, through `backend`.
    # L2: schedulers (arrays only), preset data, model building.
    "kerasmorph.schedulers": 2,
    "kerasmorph.presets": 2,
    "kerasmorph.models": 2,
    "kerasmorph.shapes": 2,  # The toy model's files and builder.
    "kerasmorph.kerascv_internals": 2,  # KerasCV's and Keras's private modules.
    # L3: the guided denoising loop.
    "kerasmorph.sampler": 3,
    # L4: the Explorer facade and its parts.
    "kerasmorph.explorer": 4,
    # L5: workflows on the Explorer's public API.
    "kerasmorph.walks": 5,
    "kerasmorph.sweeps": 5,
    "kerasmorph.adaptive": 5,
    "kerasmorph.renders": 5,  # The package: `spec`, `directory`.
    "kerasmorph.embeddings": 5,
    "kerasmorph.morph_options": 5,
    "kerasmorph.training": 5,
    # L6: checkpoint conversion and merging of files.
    "kerasmorph.checkpoints": 6,
    # L7: applications.
    "kerasmorph.cli": 7,
    "kerasmorph.bench": 7,
    "kerasmorph.quality": 7,
    "kerasmorph.shapes.train": 7,
    "kerasmorph.shapes.evaluate": 7,
    "kerasmorph.__main__": 7,
}

# (importer prefix, imported prefix): imports refused although the layers allow them.
FORBIDDEN = [
    # Schedulers know only arrays: not the models they drive.
    ("kerasmorph.schedulers", "kerasmorph.presets"),
    ("kerasmorph.schedulers", "kerasmorph.models"),
    ("kerasmorph.schedulers", "kerasmorph.shapes"),
    # Checkpoints (L6) use L0–L2 only: not the sampler, the Explorer or workflows.
    ("kerasmorph.checkpoints", "kerasmorph.sampler"),
    ("kerasmorph.checkpoints", "kerasmorph.explorer"),
    ("kerasmorph.checkpoints", "kerasmorph.walks"),
    ("kerasmorph.checkpoints", "kerasmorph.sweeps"),
    ("kerasmorph.checkpoints", "kerasmorph.adaptive"),
    ("kerasmorph.checkpoints", "kerasmorph.renders"),
    ("kerasmorph.checkpoints", "kerasmorph.embeddings"),
    ("kerasmorph.checkpoints", "kerasmorph.training"),
]

HEAVY = ("tensorflow", "keras", "keras_cv", "keras_hub", "torch", "diffusers", "transformers")
# Module prefix -> heavy libraries it may import (lazily or not); others may import none.
HEAVY_ALLOWED = {
    "kerasmorph.backend": {"keras", "tensorflow"},  # Imported once, start-up notices held.
    "kerasmorph.devices": {"tensorflow"},
    "kerasmorph.weights": {"torch"},  # Reading pickled files, lazily.
    "kerasmorph.schedulers": {"tensorflow", "keras_cv"},  # The compiled update; KerasCV's table.
    "kerasmorph.models": {"tensorflow", "keras", "keras_cv", "keras_hub"},  # The depth estimator.
    "kerasmorph.kerascv_internals": {"keras", "keras_cv"},
    "kerasmorph.shapes": {"tensorflow", "keras", "keras_cv"},
    "kerasmorph.sampler": {"tensorflow"},
    "kerasmorph.explorer": {"tensorflow", "keras"},
    "kerasmorph.walks": set(),
    "kerasmorph.morph_options": set(),
    "kerasmorph.sweeps": set(),
    "kerasmorph.adaptive": set(),  # SSIM is `kerasmorph.metrics`' (numpy).
    "kerasmorph.renders": {"tensorflow"},  # TF_CONFIG cluster resolver.
    "kerasmorph.embeddings": {"tensorflow"},
    "kerasmorph.training": {"tensorflow", "keras"},
    "kerasmorph.checkpoints": {"tensorflow", "keras", "keras_cv", "torch"},
    "kerasmorph.cli": set(HEAVY),
    "kerasmorph.bench": set(HEAVY),
    "kerasmorph.quality": set(HEAVY),
    "kerasmorph.shapes.train": set(HEAVY),
    "kerasmorph.shapes.evaluate": set(HEAVY),
}

# Modules whose import must not load TensorFlow, Keras or KerasCV (so `kerasmorph
# --help` and the numpy helpers start fast).
CHEAP_MODULES = [
    "kerasmorph",
    "kerasmorph.constants",
    "kerasmorph._checks",
    "kerasmorph.errors",
    "kerasmorph.limits",
    "kerasmorph.paths",
    "kerasmorph.locks",
    "kerasmorph.atomic",
    "kerasmorph.schedules",
    "kerasmorph.interpolation",
    "kerasmorph.noise_statistics",
    "kerasmorph.morph_options",
    "kerasmorph.images",
    "kerasmorph.export",
    "kerasmorph.installs",
    "kerasmorph.licences",
    "kerasmorph.kerascv_internals",
    "kerasmorph.merging",
    "kerasmorph.metrics",
    "kerasmorph.weights",
    "kerasmorph.progress",
    "kerasmorph.devices",
    "kerasmorph.presets",
    "kerasmorph.schedulers",
    "kerasmorph.cli",
]

# Layers whose modules must use other modules' public names only.
PUBLIC_API_LAYERS = (5, 7)


def _prefix_match(module: str, table) -> str | None:
    matches = [prefix for prefix in table if module == prefix or module.startswith(prefix + ".")]
    return max(matches, key=len) if matches else None


def layer_of(module: str) -> int | None:
    prefix = _prefix_match(module, LAYERS)
    return None if prefix is None else LAYERS[prefix]


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(source: str, module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import in `source`, function-level included."""
    package = module if module.count(".") == 0 else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.append((node.lineno, base))
            if base == "kerasmorph" or base.startswith("kerasmorph."):
                # `from kerasmorph import walks` imports the submodule `kerasmorph.walks`.
                found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def violations_of(source: str, module: str) -> list[str]:
    """Every import of `module` (given its source) that the table refuses."""
    if module == "kerasmorph":
        # The package root imports its submodules lazily, by name (PEP 562), and nothing heavy.
        return [
            f"{module}:{line} imports {name}"
            for line, name in imports_of(source, module)
            if name.split(".")[0] in HEAVY or name.startswith("kerasmorph.")
        ]
    own_layer = layer_of(module)
    if own_layer is None:
        return [f"{module}: not in the layer table (add it to LAYERS)"]
    problems = []
    for line, imported in imports_of(source, module):
        root = imported.split(".")[0]
        if root in HEAVY:
            allowed = HEAVY_ALLOWED.get(_prefix_match(module, HEAVY_ALLOWED), set())
            if root not in allowed:
                problems.append(f"{module}:{line} imports {imported} (layer {own_layer})")
            continue
        if root != "kerasmorph" or imported == "kerasmorph":
            continue
        target = layer_of(imported)
        if target is None:
            problems.append(f"{module}:{line} imports {imported}, which is not in LAYERS")
            continue
        same_unit = _prefix_match(module, LAYERS) == _prefix_match(imported, LAYERS)
        if not same_unit and target > own_layer:
            problems.append(
                f"{module}:{line} (layer {own_layer}) imports {imported} (layer {target})"
            )
        for importer, forbidden in FORBIDDEN:
            if _prefix_match(module, [importer]) and _prefix_match(imported, [forbidden]):
                problems.append(f"{module}:{line} must not import {imported}")
    return problems


def private_uses_of(source: str) -> list[str]:
    """`name._attribute` uses on other objects than `self`/`cls` (private API)."""
    uses = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id not in ("self", "cls", "sys", "os")
        ):
            uses.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return uses


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_imports_follow_the_layers(path):
    assert violations_of(path.read_text(), _module_name(path)) == []


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if layer_of(_module_name(p)) in PUBLIC_API_LAYERS],
    ids=lambda p: _module_name(p),
)
def test_workflows_and_applications_use_public_names_only(path):
    assert private_uses_of(path.read_text()) == []


def test_the_checker_catches_wrong_way_imports():
    # The Explorer's own source with one wrong-way import appended, and the
    # numpy schedules with a TensorFlow import: both must be reported.
    explorer = (PACKAGE / "explorer" / "explorer.py").read_text()
    wrong = explorer + "\n\ndef f():\n    from kerasmorph import walks\n"
    assert violations_of(explorer, "kerasmorph.explorer.explorer") == []
    problems = violations_of(wrong, "kerasmorph.explorer.explorer")
    assert len(problems) == 1 and "imports kerasmorph.walks (layer 5)" in problems[0]
    schedules = (PACKAGE / "schedules.py").read_text() + "\nimport tensorflow as tf\n"
    assert any("imports tensorflow" in p for p in violations_of(schedules, "kerasmorph.schedules"))
    relative = "from ..explorer import Explorer\n"
    assert violations_of(relative, "kerasmorph.checkpoints.convert") != []
    assert private_uses_of("x = explorer._store\n") == ["1: explorer._store"]


def test_every_module_is_in_the_table():
    unknown = [
        _module_name(p)
        for p in MODULES
        if _module_name(p) != "kerasmorph" and layer_of(_module_name(p)) is None
    ]
    assert unknown == []


def test_cheap_modules_do_not_load_tensorflow():
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in CHEAP_MODULES)
        + "print(sorted(m for m in ('tensorflow', 'keras', 'keras_cv', 'torch') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
