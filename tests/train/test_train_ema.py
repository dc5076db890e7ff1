"""The EMA follows decay_n = min(decay, (1 + n) / (warmup + n)) exactly."""

from __future__ import annotations

import pytest
import torch

from openimagen.train.ema import ema_decay_at, make_ema


def test_ema_matches_the_warmed_up_recurrence():
    model = torch.nn.Linear(3, 2)
    ema = make_ema(model, decay=0.9, warmup=4)
    expected = [p.detach().clone() for p in model.parameters()]
    for step in range(8):
        if step:  # new weights before every update but the first (a plain copy)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p))
        ema.update_parameters(model)
        if step:
            d = ema_decay_at(step - 1, 0.9, 4)
            expected = [e + (p.detach() - e) * (1 - d) for e, p in
                        zip(expected, model.parameters(), strict=True)]  # fmt: skip
        for e, got in zip(expected, ema.module.parameters(), strict=True):
            assert torch.allclose(got, e, atol=1e-6)
    assert ema_decay_at(0, 0.9, 4) == pytest.approx(0.25)  # (1 + 0) / (4 + 0)
    assert ema_decay_at(100, 0.9, 4) == 0.9  # capped at the decay
    assert not any(p.requires_grad for p in ema.parameters())
