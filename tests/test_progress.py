"""Progress bars: shown when asked, unless WISEFT_PROGRESS turns them off (papermill's kernels)."""
import io
import os

from wiseft_lib.progress import ENV, progress_bar, progress_env, show_progress


def _drawn(**kwargs) -> str:
    out = io.StringIO()
    for _ in progress_bar(range(5), desc="fine-tune", unit="step", file=out, **kwargs):
        pass
    return out.getvalue()


def test_a_bar_names_its_unit_and_is_off_when_not_asked_or_when_the_environment_says_so(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert "5/5" in _drawn() and "step" in _drawn()
    assert _drawn(show=False) == ""
    for off in ("0", "false", "off", " NO "):
        monkeypatch.setenv(ENV, off)
        assert _drawn() == "" and not show_progress(True)
    monkeypatch.setenv(ENV, "1")
    assert "5/5" in _drawn() and not show_progress(False)


def test_progress_env_sets_the_variable_for_what_starts_inside_and_restores_it(monkeypatch):
    monkeypatch.setenv(ENV, "1")
    with progress_env(False):
        assert os.environ[ENV] == "0" and not show_progress()
    assert os.environ[ENV] == "1"
    monkeypatch.delenv(ENV)
    with progress_env(True):
        assert os.environ[ENV] == "1"
    assert ENV not in os.environ
