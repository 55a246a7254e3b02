"""`kerasmorph info`: versions, devices, the precision `auto` picks, presets and weight files."""

from __future__ import annotations

import argparse
import json
import platform

import kerasmorph
from kerasmorph import schedulers
from kerasmorph.cli.arguments import SharedArguments
from kerasmorph.cli.session import Session
from kerasmorph.models import bundled_weights_dir
from kerasmorph.presets import PRESETS
from kerasmorph.weights import find_weights, search_dirs

_VERSIONS = ("kerasmorph", "python", "tensorflow", "keras", "keras_cv", "numpy", "backend")


def register(subparsers, shared: SharedArguments) -> None:
    """Adds `info`."""
    info = subparsers.add_parser("info", help="versions, devices, presets, weight files")
    info.add_argument("--weights-dir", help="also search this directory")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(run=run_info, quiet=True)


def run_info(args: argparse.Namespace, session: Session) -> int:
    report = _report(args.weights_dir)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    return 0


def _report(weights_dir: str | None) -> dict:
    import keras
    import keras_cv
    import numpy as np
    import tensorflow as tf

    report = {
        "kerasmorph": kerasmorph.__version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_cv": keras_cv.__version__,
        "numpy": np.__version__,
        "backend": keras.config.backend(),
        "devices": [
            f"{device.device_type}:{device.name}" for device in tf.config.list_physical_devices()
        ],
        "weights_searched": [str(d) for d in search_dirs(weights_dir)],
        "precision_auto": _auto_plan_report(),
        "presets": {},
        "schedulers": {
            name: {
                "a1111": schedulers.NAMES[name][0],
                "diffusers": schedulers.NAMES[name][1],
                "deterministic": not cls.stochastic,
            }
            for name, cls in schedulers.SCHEDULERS.items()
        },
    }
    for name, preset in PRESETS.items():
        found = find_weights(preset.weight_files, weights_dir)
        report["presets"][name] = {
            "description": preset.description,
            "weights": {
                file.filename: str(found[component]) if found[component] else None
                for component, file in preset.weight_files.items()
            },
        }
        bundled = bundled_weights_dir(preset)
        if bundled is not None:
            report["presets"][name]["bundled_weights"] = str(bundled)
    return report


def _auto_plan_report() -> dict:
    """What `--precision auto` resolves to here, with the default batch sizes."""
    from kerasmorph import devices

    plan = devices.resolve_precision("auto")
    return {
        **plan.to_json(),
        "cpu_bf16_flags": sorted(devices.cpu_flags() & set(devices.BF16_CPU_FLAGS)),
        "default_batch_size": {
            f"{size}x{size}": devices.default_batch_size(size, size, plan.device)
            for size in (256, 512, 768)
        },
    }


def _print_report(report: dict) -> None:
    for key in _VERSIONS:
        print(f"{key:<11} {report[key]}")
    print(f"{'devices':<11} {', '.join(report['devices'])}")
    auto = report["precision_auto"]
    print(
        f"{'auto':<11} text encoder {auto['text_encoder']}, UNet {auto['diffusion_model']}, "
        f"VAE {auto['decoder']}, step XLA {'on' if auto['jit_compile'] else 'off'}; "
        f"batch {auto['default_batch_size']['256x256']} at 256², "
        f"{auto['default_batch_size']['512x512']} at 512² ({auto['reason']})"
    )
    print("weights searched, in order:")
    for directory in report["weights_searched"]:
        print(f"  {directory}")
    print("presets:")
    for name, entry in report["presets"].items():
        print(f"  {name:<5} {entry['description']}")
        if "bundled_weights" in entry:
            print(f"        weights: trained, shipped in {entry['bundled_weights']}")
        elif not entry["weights"]:
            print("        weights: none needed (seeded random)")
        for filename, path in entry["weights"].items():
            print(f"        {filename:<26} {path or 'MISSING'}")
    print("schedulers (--scheduler):")
    for name, entry in report["schedulers"].items():
        kind = "deterministic" if entry["deterministic"] else "stochastic"
        print(f"  {name:<16} {entry['a1111']:<9} {kind:<13} {entry['diffusers']}")
