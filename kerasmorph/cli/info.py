"""`kerasmorph info`: versions, what TensorFlow finds and why, what `auto` picks, presets."""

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
    import numpy as np

    from kerasmorph.backend import keras_module, tensorflow_module

    keras = keras_module()  # TensorFlow first, its start-up notices held back.
    tf = tensorflow_module()
    import keras_cv

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
        "found": _found_report(),
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


def _found_report() -> dict:
    """The TensorFlow build, the devices it lists, what the machine has (`find_devices`)."""
    from kerasmorph import devices

    return devices.find_devices().to_json()


def _found_lines(found: dict) -> list[str]:
    """`found` as "found"/"cpu"/"note" lines: what TensorFlow sees and why."""
    gpus = ", ".join(found["gpus"]) or (
        f"none (NVIDIA driver: {found['nvidia_driver']})"
        if found["nvidia_driver"]
        else "none (no NVIDIA driver: no /proc/driver/nvidia, no nvidia-smi)"
    )
    tpus = ", ".join(found["tpus"]) or "none"
    flags = ", ".join(found["cpu_bf16_flags"])
    cpu = (
        f"bf16 units ({flags} in /proc/cpuinfo): precision auto runs the UNet in bfloat16"
        if flags
        else "no bf16 units (no amx_bf16/avx512_bf16 in /proc/cpuinfo): precision auto stays "
        "float32 on the CPU"
    )
    lines = [
        f"{'found':<11} TensorFlow {found['tensorflow_build']} build; GPUs: {gpus}; TPUs: {tpus}",
        f"{'cpu':<11} {cpu}",
    ]
    return lines + [f"{'note':<11} {note}" for note in found["notes"]]


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
    for line in _found_lines(report["found"]):
        print(line)
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
