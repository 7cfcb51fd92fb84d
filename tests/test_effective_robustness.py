"""The effective-robustness baseline: a least-squares line in logit space through accuracies in percent."""
from __future__ import annotations

import numpy as np
import pytest

from wiseft_lib.analysis.effective_robustness import LogitLine, expit_percent, fit_logit_line, logit_percent
from wiseft_lib.report import plots


def _expit(z):
    return 100 / (1 + np.exp(-z))


def test_logit_line_fit_recovers_a_known_line():
    x = np.array([40.0, 55.0, 62.0, 70.0, 78.0, 85.0, 91.0])
    lx = np.log(x / (100 - x))
    y = _expit(0.83 * lx - 0.41)
    line = fit_logit_line(x, y)
    assert line.slope == pytest.approx(0.83, abs=1e-9)
    assert line.intercept == pytest.approx(-0.41, abs=1e-9)
    slope, intercept = line  # unpacks like a pair
    np.testing.assert_allclose(line([50.0, 80.0]), _expit(0.83 * np.log([1.0, 4.0]) - 0.41))
    with pytest.raises(ValueError, match="two points"):
        fit_logit_line([50.0, 50.0], [40.0, 45.0])


def test_logit_and_expit_in_percent_invert_each_other_and_clip_the_ends():
    x = np.array([0.5, 25.0, 50.0, 75.0, 99.5])
    np.testing.assert_allclose(expit_percent(logit_percent(x)), x)
    assert logit_percent(50.0) == pytest.approx(0.0)
    assert np.isfinite(logit_percent([0.0, 100.0])).all()  # clipped to [0.01 %, 99.99 %]
    np.testing.assert_allclose(expit_percent(logit_percent([0.0, 100.0])), [0.01, 99.99])


def test_fit_rejects_unequal_or_nested_inputs():
    with pytest.raises(ValueError, match="1-D and equally long"):
        fit_logit_line([40.0, 50.0, 60.0], [30.0, 40.0])
    with pytest.raises(ValueError, match="1-D and equally long"):
        fit_logit_line([[40.0, 50.0]], [[30.0, 40.0]])
    assert isinstance(fit_logit_line([40.0, 60.0], [30.0, 50.0]), LogitLine)


def test_the_plots_module_still_exports_the_fit():
    assert plots.fit_logit_line is fit_logit_line and plots.LogitLine is LogitLine
