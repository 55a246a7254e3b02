"""diffusers' scheduler classes driven by kerasmorph's UNet: the reference loop of the
scheduler tests (tests/test_schedulers_explorer.py, tests/test_oracle.py)."""

import diffusers
import numpy as np
import torch

from kerasmorph.explorer.walk import derived_noise
from kerasmorph.sampler import timestep_embeddings
from kerasmorph.schedulers.common import SD_CONFIG

# kerasmorph name -> (diffusers class, the config keys that select the same algorithm).
DIFFUSERS = {
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True, "set_alpha_to_one": False}),
    "lms": ("LMSDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpmpp_2m_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
    ),
    "unipc": ("UniPCMultistepScheduler", {}),
}
GUIDANCE = 5.0


def relative_error(actual, expected):
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def diffusers_scheduler(name, num_steps, **config):
    class_name, extra = DIFFUSERS[name]
    scheduler = getattr(diffusers, class_name)(**{**SD_CONFIG, **extra, **config})
    scheduler.set_timesteps(num_steps)
    return scheduler


def guided(explorer, sample, timestep, encodings, unconditional, guidance=GUIDANCE):
    """The classifier-free-guided UNet output, float32, as kerasmorph's step computes it."""
    batch = len(sample)
    embedding = timestep_embeddings(np.asarray([float(timestep)]))
    outputs = explorer.diffusion_model(
        {
            "latent": np.concatenate([sample, sample]),
            "timestep_embedding": np.repeat(embedding, 2 * batch, axis=0),
            "context": np.concatenate([unconditional, encodings]),
        },
        training=False,
    )
    outputs = np.asarray(outputs, dtype=np.float32)
    unconditional_eps, conditional_eps = outputs[:batch], outputs[batch:]
    return unconditional_eps + np.float32(guidance) * (conditional_eps - unconditional_eps)


def diffusers_loop(
    explorer, scheduler, start, encodings, noise, monkeypatch, first=0, guidance=GUIDANCE
):
    """Runs diffusers' `scheduler` from `start` (at UNet call `first`) around our UNet."""
    unconditional = np.repeat(explorer.unconditional_context(), len(start), axis=0)
    calls = iter(range(first, len(scheduler.timesteps)))
    # Ancestral steps draw noise with `randn_tensor`: hand it kerasmorph's per-step noise.
    from diffusers.schedulers import scheduling_euler_ancestral_discrete as ancestral

    state = {}

    def our_noise(shape, **kwargs):
        return torch.from_numpy(derived_noise(noise, state["call"]))

    monkeypatch.setattr(ancestral, "randn_tensor", our_noise)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(first)
    sample = torch.from_numpy(start)
    for call in calls:
        state["call"] = call
        timestep = scheduler.timesteps[call]
        model_input = scheduler.scale_model_input(sample, timestep).numpy()
        output = guided(explorer, model_input, timestep, encodings, unconditional, guidance)
        sample = scheduler.step(torch.from_numpy(output), timestep, sample).prev_sample
    return sample.numpy()
