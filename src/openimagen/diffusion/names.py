"""The names a sampling setting chooses from, in a module without torch.

:data:`openimagen.diffusion.SAMPLERS` and :func:`openimagen.diffusion.apply_threshold` are
keyed by these names (each checks it at import); :mod:`openimagen.cascade.sampling` offers
them as the choices of a :class:`~openimagen.cascade.SamplingConfig`, and the command line
lists them without loading torch.
"""

SAMPLER_NAMES: tuple[str, ...] = ("ddpm", "ddim", "dpmpp_2m")
THRESHOLDS: tuple[str, ...] = ("none", "static", "dynamic")

__all__ = ["SAMPLER_NAMES", "THRESHOLDS"]
