"""Test helper: Gaussian mixtures with diagonal components, whose optimal denoiser is exact.

For x0 ~ sum_k pi_k N(mu_k, diag(s_k^2)) and x_t = alpha x0 + sigma eps, the posterior mean is
    E[x0 | x_t] = sum_k w_k(x_t) m_k(x_t),
    w_k proportional to pi_k N(x_t; alpha mu_k, diag(alpha^2 s_k^2 + sigma^2)),
    m_k = mu_k + alpha s_k^2 / (alpha^2 s_k^2 + sigma^2) (x_t - alpha mu_k)
(per component, the Gaussian posterior mean; the weights are each component's responsibility
for x_t). A sampler that used this denoiser exactly would draw from the mixture itself.
Not a test module (no test_ prefix): imported by the tests in this folder.
"""

from __future__ import annotations

import math

import torch

from openimagen.diffusion import alpha_sigma


class GaussianMixture:
    """weights [K], means [K, D], stds [K, D]; everything in float64."""

    def __init__(self, weights, means, stds):
        self.weights = torch.as_tensor(weights, dtype=torch.float64)  # [K]
        self.means = torch.as_tensor(means, dtype=torch.float64)  # [K, D]
        self.stds = torch.as_tensor(stds, dtype=torch.float64)  # [K, D]
        assert abs(float(self.weights.sum()) - 1.0) < 1e-12
        assert self.means.shape == self.stds.shape == (self.weights.shape[0], self.means.shape[1])

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    # -- exact moments ---------------------------------------------------------------------
    def mean(self) -> torch.Tensor:
        return (self.weights[:, None] * self.means).sum(0)  # [D]

    def var(self) -> torch.Tensor:
        second = (self.weights[:, None] * (self.stds**2 + self.means**2)).sum(0)  # [D]
        return second - self.mean() ** 2

    def fourth_central_moment(self) -> torch.Tensor:
        # E[(Y - m)^4] for Y ~ N(mu, s^2) with d = mu - m is d^4 + 6 d^2 s^2 + 3 s^4.
        d = self.means - self.mean()  # [K, D]
        s2 = self.stds**2
        return (self.weights[:, None] * (d**4 + 6 * d**2 * s2 + 3 * s2**2)).sum(0)  # [D]

    def standard_errors(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Monte-Carlo standard errors of the sample mean and sample variance of n draws."""
        var = self.var()
        se_mean = (var / n).sqrt()
        se_var = ((self.fourth_central_moment() - var**2) / n).sqrt()
        return se_mean, se_var

    # -- sampling and the exact denoiser -------------------------------------------------
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # [n]
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[comp] + self.stds[comp] * z  # [n, D]

    def denoise(self, x_t: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        """E[x0 | x_t] for x_t [B, D] at log-SNR ``logsnr`` ([B] or scalar)."""
        dtype = x_t.dtype
        x = x_t.to(torch.float64)[:, None, :]  # [B, 1, D]
        alpha, sigma = alpha_sigma(torch.as_tensor(logsnr, dtype=torch.float64))
        alpha = alpha.reshape(-1, 1, 1)  # [B or 1, 1, 1]
        sigma = sigma.reshape(-1, 1, 1)
        var = alpha**2 * self.stds**2 + sigma**2  # [B, K, D]
        resid = x - alpha * self.means  # [B, K, D]
        log_lik = -0.5 * (resid**2 / var + torch.log(2 * math.pi * var)).sum(-1)  # [B, K]
        w = torch.softmax(log_lik + torch.log(self.weights), dim=1)  # [B, K]
        m = self.means + alpha * self.stds**2 / var * resid  # [B, K, D]
        return (w[:, :, None] * m).sum(1).to(dtype)  # [B, D]

    def denoiser(self, schedule):
        """The exact denoiser ``(x_t [B, D], t [B], cond) -> E[x0 | x_t]`` under ``schedule``."""

        def fn(x_t: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
            return self.denoise(x_t, schedule(t.to(torch.float64)))

        return fn

    # -- 1-D distribution function, for the Wasserstein distance ------------------------
    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        assert self.dim == 1
        z = (x[:, None] - self.means[:, 0]) / self.stds[:, 0]  # [n, K]
        return (self.weights * 0.5 * torch.erfc(-z / math.sqrt(2))).sum(1)  # [n]

    def quantile(self, q: torch.Tensor) -> torch.Tensor:
        """Inverse CDF by bisection (the CDF is increasing), to ~1e-12."""
        lo = torch.full_like(q, float((self.means - 10 * self.stds).min()))
        hi = torch.full_like(q, float((self.means + 10 * self.stds).max()))
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid) < q
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def w2_to_samples(self, samples: torch.Tensor) -> float:
        """2-Wasserstein distance between the empirical law of 1-D samples [n] and this law,
        approximated by matching sorted samples with the quantiles at (i + 1/2) / n."""
        n = samples.shape[0]
        q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        return float((samples.sort().values.double() - self.quantile(q)).square().mean().sqrt())
