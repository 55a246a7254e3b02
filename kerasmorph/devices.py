"""What the machine can do fast: `precision="auto"` and the default batch size.

Default batch sizes are given for ≤256² / ≤512² / larger images.

| device | `precision="auto"` gives | denoising step | default batch |
|---|---|---|---|
| CPU with AMX/AVX512-BF16 | UNet in `"bfloat16"` (1) | `tf.function`, no XLA (2) | 4 / 2 / 1 |
| other CPU | `"float32"` | XLA | 4 / 2 / 1 |
| CUDA GPU | UNet in `"mixed_float16"` | XLA | 8 / 4 / 2 |
| TPU | UNet in `"mixed_bfloat16"` | XLA | 8 / 8 / 4 |

(1) weights stored in bf16 once. (2) oneDNN uses the bf16 units; XLA on CPU does not.

In every case the text encoder and the VAE stay float32 (a prompt costs
~0.15 s to encode, and encodings are what walks interpolate), the VAE decoder
is compiled with XLA (on CPU 4.5 s per 256² frame against 10.5 s without), and
the scheduler arithmetic, the guidance combination and the noise are float32.
An explicit precision or `jit_compile` always wins over these choices.

Why pure bf16 rather than `mixed_bfloat16` on CPU: a mixed policy keeps
float32 weights and casts them on every call (~30% of the op time of a step
on this kind of CPU: 2.5 s against 2.3 s per guided step at 256²); bfloat16
has float32's exponent range, so it cannot overflow where float16 does.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
from typing import Literal

from kerasmorph.backend import tensorflow_module
from kerasmorph.constants import PRECISION_OPTIONS
from kerasmorph.installs import install_command

Device = Literal["cpu-bf16", "cpu", "gpu", "tpu"]
DEVICES: tuple[str, ...] = ("cpu-bf16", "cpu", "gpu", "tpu")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

# Rows per UNet batch (each row is one image; the guided step doubles it) by
# image area: (largest area in pixels, batch size), checked in order.
_BATCH_RULES: dict[str, tuple[tuple[int, int], ...]] = {
    "cpu": ((256 * 256, 4), (512 * 512, 2), (1 << 62, 1)),
    "gpu": ((256 * 256, 8), (512 * 512, 4), (1 << 62, 2)),
    "tpu": ((512 * 512, 8), (1 << 62, 4)),
}


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """Returns the CPU feature flags listed in `path` (empty when unreadable)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def detect_device() -> Device:
    """Returns the fastest device TensorFlow sees: "tpu", "gpu", "cpu-bf16" or "cpu".

    "cpu-bf16" means the CPU has AMX or AVX512-BF16 units (`amx_bf16` or
    `avx512_bf16` in /proc/cpuinfo), which oneDNN uses for bfloat16 matmuls
    and convolutions.
    """
    tf = tensorflow_module()
    if tf.config.list_physical_devices("TPU"):
        return "tpu"
    if tf.config.list_physical_devices("GPU"):
        return "gpu"
    if cpu_flags() & set(BF16_CPU_FLAGS):
        return "cpu-bf16"
    return "cpu"


@dataclasses.dataclass(frozen=True)
class PrecisionPlan:
    """The dtype policies and compilation an Explorer uses.

    Attributes:
        requested: the `precision` the caller passed ("auto" or a policy).
        device: the device the plan is for (see `detect_device`).
        text_encoder: Keras dtype policy of the text encoder.
        diffusion_model: Keras dtype policy of the UNet.
        decoder: Keras dtype policy of the VAE (decoder and encoder).
        jit_compile: compile the denoising step with XLA.
        decoder_jit_compile: compile the VAE calls with XLA.
        reason: one line saying why, for `describe()` and `kerasmorph info`.
    """

    requested: str
    device: str
    text_encoder: str
    diffusion_model: str
    decoder: str
    jit_compile: bool
    decoder_jit_compile: bool
    reason: str

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def resolve_precision(
    precision: str = "auto",
    jit_compile: bool | None = None,
    device: Device | None = None,
) -> PrecisionPlan:
    """Resolves a requested precision and `jit_compile` into a `PrecisionPlan`.

    Args:
        precision: "auto", or a Keras policy from
            `kerasmorph.presets.PRECISIONS` applied to the text encoder and
            UNet (the VAE stays float32 in every case).
        jit_compile: `None` lets the plan choose (XLA everywhere except the
            bf16 CPU step); `True`/`False` applies to the step and the VAE.
        device: the device to plan for; default `detect_device()`.

    Returns:
        A `PrecisionPlan`.

    Raises:
        ValueError: for an unknown precision or device.
    """
    if precision not in PRECISION_OPTIONS:
        valid = ", ".join(repr(p) for p in PRECISION_OPTIONS)
        raise ValueError(f"`precision` must be one of {valid}. Received: precision={precision!r}")
    if device is None:
        device = detect_device()
    if device not in DEVICES:
        raise ValueError(
            f"`device` must be one of {', '.join(map(repr, DEVICES))}. Received: device={device!r}"
        )
    text_policy = unet_policy = precision
    step_jit = True
    if precision == "auto":
        text_policy = "float32"
        unet_policy, step_jit, reason = {
            "cpu-bf16": (
                "bfloat16",
                False,
                "CPU with AMX/AVX512-BF16: bf16 UNet weights through oneDNN, no XLA",
            ),
            "cpu": ("float32", True, "CPU without bf16 units: float32 with XLA"),
            "gpu": ("mixed_float16", True, "CUDA GPU: mixed_float16 with XLA"),
            "tpu": ("mixed_bfloat16", True, "TPU: mixed_bfloat16 with XLA"),
        }[device]
    else:
        reason = f"explicit precision={precision!r}"
    if jit_compile is not None:
        step_jit = bool(jit_compile)
        reason += f"; explicit jit_compile={step_jit}"
    return PrecisionPlan(
        requested=precision,
        device=device,
        text_encoder=text_policy,
        diffusion_model=unet_policy,
        decoder="float32",
        jit_compile=step_jit,
        decoder_jit_compile=True if jit_compile is None else bool(jit_compile),
        reason=reason,
    )


def default_batch_size(img_height: int, img_width: int, device: Device | None = None) -> int:
    """Images per UNet batch that pay on `device` at this image size.

    Larger batches fill the matrix units better (on the AMX CPU measured
    here, 4 images at 256² cost 1.8 s per image-step against 2.3 s alone, in
    bf16) until activations dominate memory; the rule is the table in this
    module's docstring. A render of any length then runs through one
    compiled shape, the last batch padded.
    """
    if device is None:
        device = detect_device()
    rules = _BATCH_RULES["cpu" if device.startswith("cpu") else device]
    area = img_height * img_width
    return next(size for limit, size in rules if area <= limit)


def nvidia_driver() -> str:
    """What shows an NVIDIA driver on this machine ("" when nothing does)."""
    found = [path for path in ("/proc/driver/nvidia",) if os.path.exists(path)]
    smi = shutil.which("nvidia-smi")
    if smi:
        found.append(f"nvidia-smi at {smi}")
    return ", ".join(found)


def tpu_device_files(dev: str = "/dev") -> list[str]:
    """The TPU chips' device files of a Cloud TPU VM (`/dev/accel*`, `/dev/vfio/<n>`)."""
    try:
        found = [os.path.join(dev, name) for name in os.listdir(dev) if name.startswith("accel")]
        vfio = os.path.join(dev, "vfio")
        if os.path.isdir(vfio):
            found += [os.path.join(vfio, name) for name in os.listdir(vfio) if name.isdigit()]
    except OSError:
        return []
    return sorted(found)


@dataclasses.dataclass(frozen=True)
class DeviceFindings:
    """What TensorFlow finds on this machine, and why (for `kerasmorph info`).

    Attributes:
        tensorflow_build: "CUDA 12.5.1, cuDNN 9", "ROCm" or "CPU-only".
        gpus: the GPUs TensorFlow lists, e.g. `("GPU:0",)`.
        tpus: the TPUs TensorFlow lists.
        nvidia_driver: what shows an NVIDIA driver here (see `nvidia_driver`), or "".
        tpu_device_files: the TPU device files here (see `tpu_device_files`).
        cpu_bf16_flags: the bf16 units /proc/cpuinfo lists (`BF16_CPU_FLAGS`).
        notes: one line per mismatch between the machine and this TensorFlow,
            with the command that fixes it.
    """

    tensorflow_build: str
    gpus: tuple[str, ...]
    tpus: tuple[str, ...]
    nvidia_driver: str
    tpu_device_files: tuple[str, ...]
    cpu_bf16_flags: tuple[str, ...]
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def _build_name(build_info: dict) -> str:
    if build_info.get("is_cuda_build"):
        cuda, cudnn = build_info.get("cuda_version", "?"), build_info.get("cudnn_version", "?")
        return f"CUDA {cuda}, cuDNN {cudnn}"
    return "ROCm" if build_info.get("is_rocm_build") else "CPU-only"


def findings_from(
    build_info: dict,
    gpus: list[str],
    tpus: list[str],
    driver: str,
    tpu_files: list[str],
    bf16_flags: list[str],
) -> DeviceFindings:
    """`DeviceFindings` from what was probed (`find_devices` probes this machine)."""
    build = _build_name(build_info)
    notes = []
    if driver and not gpus:
        if build == "CPU-only":
            notes.append(
                f"An NVIDIA driver is here ({driver}) but this TensorFlow is a CPU-only "
                f"build: `{install_command('gpu')}` installs the CUDA build."
            )
        else:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            hidden = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
            notes.append(
                f"An NVIDIA driver is here ({driver}) and TensorFlow is a {build} build, but "
                f"it lists no GPU{hidden}: check that `nvidia-smi` shows a driver for that CUDA."
            )
    if tpu_files and not tpus:
        notes.append(
            f"A Cloud TPU VM's device files are here ({', '.join(tpu_files[:2])}) but "
            f"TensorFlow lists no TPU: on a TPU VM, `{install_command('tpu')}` installs "
            "the TPU build."
        )
    return DeviceFindings(
        tensorflow_build=build,
        gpus=tuple(gpus),
        tpus=tuple(tpus),
        nvidia_driver=driver,
        tpu_device_files=tuple(tpu_files),
        cpu_bf16_flags=tuple(sorted(bf16_flags)),
        notes=tuple(notes),
    )


def find_devices() -> DeviceFindings:
    """Probes this machine and its TensorFlow: the build, the devices, the driver, the CPU."""
    tf = tensorflow_module()

    def names(kind: str) -> list[str]:
        return [
            device.name.split("device:")[-1] for device in tf.config.list_physical_devices(kind)
        ]

    return findings_from(
        dict(tf.sysconfig.get_build_info()),
        names("GPU"),
        names("TPU"),
        nvidia_driver(),
        tpu_device_files(),
        sorted(cpu_flags() & set(BF16_CPU_FLAGS)),
    )
