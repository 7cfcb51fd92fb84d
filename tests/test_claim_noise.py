"""Which claims a run of a given test-set size can decide (the workshop tier's 1,000 images vs the mini's 5,000)."""
import math

import pandas as pd
import pytest

from wiseft_lib.analysis.claim_noise import bar_threshold, sample_noise_pp, with_test_noise


def test_noise_is_twice_the_worst_case_standard_error_of_a_difference():
    assert sample_noise_pp(1000) == pytest.approx(4.47, abs=0.01)
    assert sample_noise_pp(5000) == pytest.approx(2.0, abs=0.001)
    assert sample_noise_pp(4000) == pytest.approx(sample_noise_pp(1000) / 2)  # 4x the images: half the noise
    # as simulated: the difference of two independent accuracies at p = 0.5 on n images
    n, p = 1000, 0.5
    assert sample_noise_pp(n) == pytest.approx(2 * 100 * math.sqrt(2 * p * (1 - p) / n))
    with pytest.raises(ValueError, match="at least 1"):
        sample_noise_pp(0)


def test_bars_are_read_where_they_are_thresholds():
    assert bar_threshold("> 0") == 0.0 and bar_threshold(">= 8") == 8.0 and bar_threshold(">= -1") == -1.0
    assert bar_threshold("(reported)") is None and bar_threshold("wins > 2.5") is None and bar_threshold("") is None
    assert bar_threshold(None) is None


def test_claims_near_their_bar_are_within_noise_at_a_small_size():
    claims = pd.DataFrame({"claim": ["ID gain", "OOD gain", "keeps ID", "reported"],
                           "value_pp": [15.0, 3.0, -0.5, 1.0], "bar_pp": [">= 8", ">= 2", ">= -1", "(reported)"],
                           "holds": [True, True, True, None]})
    small = with_test_noise(claims, 1000)  # +-4.47 pp
    assert small["within_noise"].tolist() == [False, True, True, None]
    large = with_test_noise(claims, 50_000)  # +-0.63 pp
    assert large["within_noise"].tolist() == [False, False, True, None]
    assert small["noise_pp"].tolist()[:3] == [4.47] * 3 and small["noise_pp"].isna().tolist()[3]
    assert with_test_noise(claims, None) is claims  # unknown size (a whole real test set): unchanged
    assert list(claims.columns) == ["claim", "value_pp", "bar_pp", "holds"]  # the input is not modified


def test_a_study_writes_its_claims_with_the_noise(tmp_path):
    from wiseft_lib.studies.base import StudyOutputs
    from wiseft_lib.studies.fig1_id_vs_ood import Fig1Params

    outputs = StudyOutputs("fig1_id_vs_ood", Fig1Params(output_dir=str(tmp_path)))
    claims = pd.DataFrame({"claim": ["OOD gain"], "value_pp": [1.0], "bar_pp": ["> 0"], "holds": [True]})
    written = outputs.claims(claims, 1000)
    assert bool(written["within_noise"].iloc[0])
    on_disk = pd.read_csv(tmp_path / "claims.csv")
    assert on_disk["within_noise"].tolist() == [True] and (tmp_path / "claims.md").is_file()
