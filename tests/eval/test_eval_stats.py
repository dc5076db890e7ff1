"""Wilson score intervals (eval/stats.py)."""

from __future__ import annotations

import pytest

from openimagen.eval.stats import wilson_interval


def test_eval_wilson_interval_matches_textbook_values():
    # 0/10: upper bound z^2 / (n + z^2); 5/10: 0.5 -+ 0.2634; 10/10 mirrors 0/10
    assert wilson_interval(0, 10) == pytest.approx((0.0, 3.841459 / 13.841459), abs=1e-6)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(1 - 3.841459 / 13.841459, abs=1e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)
