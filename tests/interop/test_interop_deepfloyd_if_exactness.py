"""openimagen's cascade of an imported IF checkpoint against diffusers' own IF pipelines.

The checkpoints are tiny IF-shaped ones with random weights (tests/if_testutil.py), saved in
the diffusers layout; openimagen imports them (``import_deepfloyd_if``) and samples the same
prompts with the same seeds as ``IFPipeline`` + ``IFSuperResolutionPipeline``: the same
initial noise, DDPM step noise and stage II low-res noise are drawn from the same per-image
generators in the same order, so the images must agree.

Why float64: random U-Nets at IF's guidance weights (7 and 4) are chaotic samplers. In float32
a rounding difference of 1e-7 in a first step grows about 2x per step; diffusers disagrees
with *itself* by 9e-4 on stage I when the same two prompts are drawn as one batch or as two
(measured, test_float32_reference_differs_from_itself). So the exact comparison runs both
sides in float64 (networks and T5), with the reference's DDPM tables in float64 too: then
DDPM with learned variance agrees to 1e-9 end to end. diffusers' DPM-Solver++ casts every
step to float32 and keeps its sigmas in float32, so there each stage agrees to 1e-4 given the
same input and the chained cascade to 1e-3. The float32 runs are checked at the level of
the reference's own spread.
"""

from __future__ import annotations

import pytest
import torch

from openimagen.cascade import Cascade

PROMPTS = ["a red circle", "Two Blue squares on the left "]  # IF lower-cases and strips
SEEDS = [3, 7]
STEPS = {"ddpm": (10, 5), "dpmpp_2m": (8, 5)}
IF_GUIDANCE = (7.0, 4.0)  # IFPipeline and IFSuperResolutionPipeline defaults


@pytest.fixture(scope="module")
def checkpoints(if_checkpoints):
    return if_checkpoints


def reference(checkpoints, sampler: str, dtype: torch.dtype, *, prompts=PROMPTS, seeds=SEEDS,
              lowres: torch.Tensor | None = None):  # fmt: skip
    """diffusers' pipelines: stage I images and stage II images (of ``lowres`` if given)."""
    from diffusers import DPMSolverMultistepScheduler

    from if_testutil import load_pipelines

    first, second = load_pipelines(checkpoints[0], checkpoints[1])
    for pipe in (first, second):
        pipe.to(dtype)
        if sampler == "dpmpp_2m":
            pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        elif dtype == torch.float64:  # the reference's own tables in double precision too
            pipe.scheduler.alphas_cumprod = pipe.scheduler.alphas_cumprod.double()
    steps = STEPS[sampler]
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    common = dict(generator=generators, output_type="pt", clean_caption=False)
    image1 = first(prompt=prompts, num_inference_steps=steps[0], guidance_scale=IF_GUIDANCE[0],
                   **common).images  # fmt: skip
    if lowres is not None:  # stage II alone: its generators start fresh, as ours do
        common["generator"] = [torch.Generator().manual_seed(s) for s in seeds]
    image2 = second(image=image1 if lowres is None else lowres, prompt=prompts,
                    num_inference_steps=steps[1], guidance_scale=IF_GUIDANCE[1], noise_level=250,
                    **common).images  # fmt: skip
    return image1, image2


def ours(checkpoints, sampler: str, dtype: torch.dtype, *, lowres: torch.Tensor | None = None):
    cascade = Cascade.load(checkpoints[2], device="cpu", dtype=dtype)
    steps = STEPS[sampler]
    sampling = [s.replace(sampler=sampler, steps=n) for s, n in zip(cascade.sampling, steps,
                                                                     strict=True)]  # fmt: skip
    # the imported defaults are IF's
    assert [s.guidance_weight for s in cascade.sampling] == list(IF_GUIDANCE)
    image1 = cascade.generate(PROMPTS, SEEDS, sampling=sampling, num_stages=1)
    if lowres is None:
        return image1, cascade.generate(PROMPTS, SEEDS, sampling=sampling)
    embeds, mask = cascade.encode(PROMPTS)
    null, null_mask = cascade.encode([""])
    generators = [torch.Generator().manual_seed(s) for s in SEEDS]
    image2 = cascade.stages[1].sample(
        embeds, mask, generators, sampling[1], lowres=lowres,
        uncond_text=(null.expand(len(SEEDS), -1, -1), null_mask.expand(len(SEEDS), -1)),
    )  # fmt: skip
    return image1, image2


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype
    return (a - b).abs().max().item()


def test_ddpm_learned_variance_equals_diffusers_in_float64(checkpoints):
    ref1, ref2 = reference(checkpoints, "ddpm", torch.float64)
    our1, our2 = ours(checkpoints, "ddpm", torch.float64)
    assert ref2.shape == (2, 3, 32, 32) and ref2.std() > 0.1  # real images, not constants
    print(f"ddpm float64: stage I {max_diff(our1, ref1):.2e}, cascade {max_diff(our2, ref2):.2e}")
    assert max_diff(our1, ref1) < 1e-9
    assert max_diff(our2, ref2) < 1e-9


def test_dpm_solver_pp_equals_diffusers(checkpoints):
    ref1, ref2 = reference(checkpoints, "dpmpp_2m", torch.float64)
    our1, our2 = ours(checkpoints, "dpmpp_2m", torch.float64)
    lowres = ref1  # stage II on the very same input: the reference's stage I images
    _, sr_ref = reference(checkpoints, "dpmpp_2m", torch.float64, lowres=lowres)
    _, sr_our = ours(checkpoints, "dpmpp_2m", torch.float64, lowres=lowres)
    print(f"dpmpp_2m float64: stage I {max_diff(our1, ref1):.2e}, stage II on the same input "
          f"{max_diff(sr_our, sr_ref):.2e}, cascade {max_diff(our2, ref2):.2e}")  # fmt: skip
    assert max_diff(our1, ref1) < 1e-4
    assert max_diff(sr_our, sr_ref) < 1e-4
    # the chained cascade: stage I's float32-solver difference, amplified by stage II
    assert max_diff(our2, ref2) < 1e-3


def test_float32_matches_at_the_reference_spread(checkpoints):
    """In float32 both samplers agree with diffusers about as well as diffusers agrees with
    itself when the batch is split (test below): well under 1e-1 of the [-1, 1] range."""
    for sampler in STEPS:
        ref1, ref2 = reference(checkpoints, sampler, torch.float32)
        our1, our2 = ours(checkpoints, sampler, torch.float32)
        print(f"{sampler} float32: stage I {max_diff(our1, ref1):.2e}, "
              f"cascade {max_diff(our2, ref2):.2e}")  # fmt: skip
        assert max_diff(our1, ref1) < 5e-3
        assert max_diff(our2, ref2) < 5e-2


def test_float32_reference_differs_from_itself(checkpoints):
    """The yardstick of the float32 test: diffusers' stage I, batch of 2 vs two batches of 1."""
    both, _ = reference(checkpoints, "ddpm", torch.float32)
    alone = torch.cat([reference(checkpoints, "ddpm", torch.float32, prompts=[p], seeds=[s])[0]
                       for p, s in zip(PROMPTS, SEEDS, strict=True)])  # fmt: skip
    spread = max_diff(both, alone)
    print(f"diffusers float32, stage I, one batch vs two: {spread:.2e}")
    assert spread > 1e-5  # float32 rounding is visible: why the exact checks run in float64
