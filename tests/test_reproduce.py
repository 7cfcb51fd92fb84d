"""`make reproduce`: every notebook of a preset, failures listed with their error, one index page."""
import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

pytest.importorskip("papermill")

GOOD = """
from pathlib import Path
import pandas as pd
from wiseft_lib.report.plots import new_figure, save_figure
out = Path(output_dir)
fig = new_figure((3, 2)); fig.subplots().plot([0, 1], [scale, 2 * scale]); save_figure(fig, out / "figure", ("png",))
pd.DataFrame({"claim": ["a", "b"], "holds": [True, smoke]}).to_csv(out / "claims.csv", index=False)
(out / "summary.md").write_text("| a | b |\\n|---|---|\\n| 1 | 2 |\\n")
from wiseft_lib.progress import progress_bar
for _ in progress_bar(range(3), desc="long step", unit="step"):
    pass
fig
"""


def make_notebook(path: Path, body: str) -> None:
    nb = new_notebook(cells=[new_code_cell('output_dir = "x"\nsmoke = False\nscale = 1', metadata={"tags": ["parameters"]}),
                             new_code_cell(body)], metadata={"kernelspec": {"name": "python3", "display_name": "P", "language": "python"}, "language_info": {"name": "python"}})
    nbformat.write(nb, path)


def make_project(root: Path, notebooks: dict[str, str], mini: tuple[str, ...]) -> None:
    """``notebooks/NAME.ipynb`` for each ``{name: body}``; a ``params/mini`` file (scale 3) for those in ``mini``."""
    (root / "notebooks").mkdir()
    (root / "params" / "mini").mkdir(parents=True)
    for name, body in notebooks.items():
        make_notebook(root / "notebooks" / f"{name}.ipynb", body)
    for name in mini:
        (root / "params" / "mini" / f"{name}.yaml").write_text("scale: 3\n")


@pytest.mark.slow
def test_every_notebook_runs_a_failure_is_listed_and_the_others_still_run(tmp_path):
    from wiseft_lib.reproduce import main, reproduce

    make_project(tmp_path, {"a_broken": "raise RuntimeError('the GPU caught fire')", "b_good": GOOD,
                            "c_other_preset": GOOD}, mini=("a_broken", "b_good"))
    runs = reproduce("mini", root=tmp_path, smoke=True)
    assert [(r.name, r.status) for r in runs] == [("a_broken", "failed"), ("b_good", "ok")]
    assert "RuntimeError: the GPU caught fire" in runs[0].error
    out = tmp_path / "outputs" / "mini"
    assert (out / "b_good" / "b_good.ipynb").exists() and (out / "b_good" / "figure.png").exists()
    index = (out / "index.md").read_text()
    assert "| [a_broken](#a-broken) | failed |" in index and "the GPU caught fire" in index
    assert "2 of 2 claims hold | 1/1 |" in index  # smoke=True reached the notebook; its one figure cell shows a PNG
    assert str(runs[1].shown) == "1/1" and runs[0].shown.cells == 0
    assert "![figure](b_good/figure.png)" in index and "[b_good.ipynb](b_good/b_good.ipynb)" in index
    assert not (out / "c_other_preset").exists(), "notebooks without a params file of the preset are skipped"
    outputs = str([c.get("outputs") for c in nbformat.read(out / "b_good" / "b_good.ipynb", as_version=4).cells])
    assert "image/png" in outputs and "long step" not in outputs, "no progress bars in papermill runs unless asked"
    with pytest.raises(ValueError, match="no preset 'gpu'"):
        reproduce("gpu", root=tmp_path)
    assert main(["--preset", "nope"]) == 2


@pytest.mark.slow
def test_a_cell_that_never_returns_fails_its_notebook_only(tmp_path):
    from wiseft_lib.reproduce import reproduce

    make_project(tmp_path, {"a_stuck": "import time\ntime.sleep(600)", "b_good": GOOD}, mini=("a_stuck", "b_good"))
    runs = reproduce("mini", root=tmp_path, smoke=True, cell_timeout=3)
    assert [(r.name, r.status) for r in runs] == [("a_stuck", "failed"), ("b_good", "ok")]
    assert "timed out" in runs[0].error.lower() or "timeout" in runs[0].error.lower(), runs[0].error


def test_index_lists_every_paper_item_with_its_notebook_or_why_not(tmp_path):
    from wiseft_lib.reproduce import PAPER_COVERAGE, StudyRun, write_index
    from wiseft_lib.studies import STUDIES

    for item, notebook, note in PAPER_COVERAGE:
        assert notebook in STUDIES or (notebook is None and note), item  # a notebook that exists, or a reason
    covered = " ".join(item for item, _, _ in PAPER_COVERAGE)
    for n in (1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 20, 21, 26, 27):
        assert f" {n}" in f" {covered.replace(',', ' ').replace('-', ' ')}", f"Figure/Table {n}"
    run = StudyRun("table2_transfer", "ok", 1.0, tmp_path / "table2_transfer", tmp_path / "x.ipynb")
    index = write_index([run], tmp_path, "mini").read_text()
    assert "| Table 2, Figure 16 | [table2_transfer](#table2-transfer) (ok) |" in index
    assert "| Figure 26 | `fig26_objectnet_names` (not in this run) |" in index
    assert "| Figure 4 | none | BASIC-L" in index


def test_own_cache_gives_each_study_its_own_empty_run_cache(tmp_path, monkeypatch):
    """--own-cache: each notebook's time from an empty cache (the workshop tier's < 3 min per notebook)."""
    import papermill

    from wiseft_lib import reproduce as rp

    seen = {}
    monkeypatch.setattr(papermill, "execute_notebook", lambda src, dst, parameters, **kw: seen.update(
        {Path(src).stem: parameters, "progress": os.environ.get("WISEFT_PROGRESS")}))
    params = tmp_path / "p.yaml"
    params.write_text("seeds: [0]\n")
    for name in ("fig1_id_vs_ood", "00_wiseft_tutorial"):
        rp._execute(Path(f"notebooks/{name}.ipynb"), params, tmp_path / name, False, "python3", False, None,
                    own_cache=True)
    assert seen["fig1_id_vs_ood"]["runs_dir"] == str((tmp_path / "fig1_id_vs_ood" / "runs").resolve())
    assert seen["progress"] == "0", "the kernel is started with progress bars off"
    rp._execute(Path("notebooks/fig1_id_vs_ood.ipynb"), params, tmp_path / "x", False, "python3", True, None,
                progress=True)
    assert seen["progress"] == "1" and "WISEFT_PROGRESS" not in os.environ
    assert "runs_dir" not in seen["00_wiseft_tutorial"]  # the tutorial keeps no run cache: not given one
    rp._execute(Path("notebooks/fig1_id_vs_ood.ipynb"), params, tmp_path / "shared", False, "python3", False)
    assert "runs_dir" not in seen["fig1_id_vs_ood"]  # the default: the preset's shared cache
