"""openimagen's cascade of an imported IF checkpoint against diffusers' own IF pipelines.

The checkpoints are tiny IF-shaped ones with random weights (tests/if_testutil.py), saved in
the diffusers layout; openimagen imports them (``import_deepfloyd_if``) and samples the same
prompts with the same seeds as ``IFPipeline`` + ``IFSuperResolutionPipeline``: the same
initial noise, DDPM step noise and stage II low-res noise are drawn from the same per-image
generators in the same order, so the images must agree.

Why float64: random U-Nets at IF's guidance weights (7 and 4) are chaotic samplers. In float32
a rounding difference of 1e-7 in a first step grows about 2x per step; diffusers disagrees
with *itself* by 6e-4 on stage I when the same two prompts are drawn as one batch or as two
(measured, test_float32_reference_differs_from_itself). So the exact comparison runs both
sides in float64 (networks and T5), with the reference's DDPM tables in float64 too: then
DDPM with learned variance agrees to 1e-9 end to end. diffusers' DPM-Solver++ casts every
step to float32 and keeps its sigmas in float32: there stage I agrees to 1e-4, and our whole
cascade agrees to 1e-4 with diffusers' stage II run on our stage I images (same noise); the
two chained pipelines differ by ~1.5e-4 (bound 1e-3), stage I's 1e-5 amplified by stage II's
sensitivity to its input. The float32 runs are checked at the level of the reference's own
spread.
"""

from __future__ import annotations

import pytest
import torch

from openimagen.cascade import Cascade

PROMPTS = ["a red circle", "Two Blue squares on the left "]  # IF lower-cases and strips
SEEDS = [3, 7]
STEPS = {"ddpm": (10, 5), "dpmpp_2m": (8, 5)}
IF_GUIDANCE = (7.0, 4.0)  # IFPipeline and IFSuperResolutionPipeline defaults
# diffusers' own numpy-2 DeprecationWarning (copy=False in np.array), not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def checkpoints(if_checkpoints):
    return if_checkpoints


def reference(checkpoints, sampler: str, dtype: torch.dtype, *, prompts=PROMPTS, seeds=SEEDS,
              lowres: torch.Tensor | None = None):  # fmt: skip
    """diffusers' pipelines: stage I images and stage II images, of stage I's or, given
    ``lowres``, of those (its generators continue from stage I's draws either way)."""
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
    image2 = second(image=image1 if lowres is None else lowres, prompt=prompts,
                    num_inference_steps=steps[1], guidance_scale=IF_GUIDANCE[1], noise_level=250,
                    **common).images  # fmt: skip
    return image1, image2


def ours(checkpoints, sampler: str, dtype: torch.dtype):
    cascade = Cascade.load(checkpoints[2], device="cpu", dtype=dtype)
    steps = STEPS[sampler]
    sampling = [s.replace(sampler=sampler, steps=n) for s, n in zip(cascade.sampling, steps,
                                                                     strict=True)]  # fmt: skip
    # the imported defaults are IF's
    assert [s.guidance_weight for s in cascade.sampling] == list(IF_GUIDANCE)
    image1 = cascade.generate(PROMPTS, SEEDS, sampling=sampling, num_stages=1)
    return image1, cascade.generate(PROMPTS, SEEDS, sampling=sampling)


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
    # diffusers' stage II on *our* stage I images, with the same noise: our whole cascade
    _, ref2_of_ours = reference(checkpoints, "dpmpp_2m", torch.float64, lowres=our1)
    print(f"dpmpp_2m float64: stage I {max_diff(our1, ref1):.2e}, stage II on the same input "
          f"{max_diff(our2, ref2_of_ours):.2e}, chained {max_diff(our2, ref2):.2e}")  # fmt: skip
    assert max_diff(our1, ref1) < 1e-4
    assert max_diff(our2, ref2_of_ours) < 1e-4
    # both chained: stage I's 1e-5 (diffusers' solver runs in float32), which stage II, as
    # sensitive to its input in diffusers as here, turns into ~1.5e-4
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
