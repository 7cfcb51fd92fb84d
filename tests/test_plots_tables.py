"""Figure 1 plotting (logit axes, saved files) and table formatting."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wiseft_lib.report.plots import plot_id_vs_ood, save_figure
from wiseft_lib.report.tables import beside_published, to_latex, to_markdown, write_table


def _curves() -> pd.DataFrame:
    rows = []
    for mode, (ix, oy) in {"end-to-end": (81.3, 53.8), "linear classifier": (79.9, 57.2)}.items():
        for seed in range(2):
            for a in np.linspace(0, 1, 11):
                rows.append(dict(mode=mode, seed=seed, alpha=round(a, 2),
                                 id_acc=(1 - a) * 68.3 + a * ix + 10 * a * (1 - a) + 0.3 * seed,
                                 ood_avg=(1 - a) * 58.1 + a * oy + 8 * a * (1 - a) - 0.2 * seed))
    return pd.DataFrame(rows)


def test_figure1_files_exist_and_axes_are_logit(tmp_path):
    extra = pd.DataFrame({"group": ["standard"] * 4 + ["zero-shot CLIP"] * 3,
                          "id_acc": [70, 74, 78, 80, 55, 62, 68.3],
                          "ood_avg": [35, 39, 44, 46, 45, 52, 58.1]})
    fig = plot_id_vs_ood(_curves(), extra=extra, title="Figure 1")
    ax = fig.axes[0]
    assert ax.get_xscale() == "logit" and ax.get_yscale() == "logit"
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert "70" in labels and "80" in labels  # percent tick labels
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "zero-shot model (α=0)" in legend and "WiSE-FT (end-to-end)" in legend
    assert any(t.get_text() == "α=0.5" for t in ax.texts)
    paths = save_figure(fig, tmp_path / "figs" / "figure1", dpi=60)
    assert [p.name for p in paths] == ["figure1.png", "figure1.pdf", "figure1.data.csv"]  # the points drawn, beside
    assert all(p.stat().st_size > 1000 for p in paths)
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["figure1.data.csv", "figure1.pdf", "figure1.png"]
    pd.testing.assert_frame_equal(pd.read_csv(paths[2]), fig.data, check_dtype=False)  # n: Int64, read as float
    with pytest.raises(ValueError, match="needs columns"):
        plot_id_vs_ood(pd.DataFrame({"alpha": [0]}))


def test_markdown_latex_and_written_files(tmp_path):
    df = pd.DataFrame({"method": ["zero-shot", "WiSE-FT|0.5", "a_b & 100%"],
                       "IN": [68.31, 81.7, np.nan], "n": [1, 2, 3]})
    md = to_markdown(df)
    lines = md.strip().split("\n")
    assert lines[0].split("|")[1].strip() == "method"
    seps = [c.strip() for c in lines[1].strip("|").split("|")]
    assert seps[0].startswith(":") and seps[1].endswith(":") and seps[2].endswith(":")
    assert "68.3" in md and "WiSE-FT\\|0.5" in md
    assert [c.strip() for c in lines[4].strip("|").split("|")] == ["a_b & 100%", "-", "3"]
    assert len({len(line) for line in lines}) == 1  # aligned columns
    tex = to_latex(df, caption="Table 1", label="tab:1")
    assert r"\toprule" in tex and r"a\_b \& 100\%" in tex and r"\begin{tabular}{lrr}" in tex
    assert r"\caption{Table 1}" in tex and "68.3 & 1" in tex
    paths = write_table(df, tmp_path / "t" / "table1")
    assert sorted(paths) == ["csv", "md", "tex"]
    assert pd.read_csv(paths["csv"])["IN"].iloc[0] == 68.31  # full precision in CSV
    assert paths["md"].read_text() == md and paths["tex"].read_text() == to_latex(df)


def test_beside_published():
    ours = pd.DataFrame({"method": ["zs", "ft", "ours-only"], "IN": [68.0, 81.0, 50.0],
                         "V2": [61.0, 70.0, 40.0]})
    paper = pd.DataFrame({"method": ["ft", "zs", "paper-only"], "IN": [81.3, 68.3, 1.0],
                          "A": [36.7, 49.8, 2.0]})
    out = beside_published(ours, paper, on="method", diff=True)
    assert list(out.columns) == ["method", "IN_ours", "IN_paper", "IN_diff", "V2_ours", "A_paper"]
    assert out.method.tolist() == ["zs", "ft", "ours-only", "paper-only"]
    zs = out.set_index("method").loc["zs"]
    assert zs.IN_paper == 68.3 and zs.IN_diff == pytest.approx(-0.3) and zs.A_paper == 49.8
    assert np.isnan(out.set_index("method").loc["ours-only", "IN_paper"])
    by_index = beside_published(ours.set_index("method"), paper.set_index("method"))
    assert by_index.loc["ft", "IN_paper"] == 81.3
    with pytest.raises(ValueError, match="join column"):
        beside_published(ours, paper, on="row")


def test_seed_ranges_of_identical_values_do_not_break_the_error_bars():
    import pandas as pd

    from wiseft_lib.report.plots import plot_id_vs_ood

    v = 62.40967502235823  # the mean of three of these exceeds their max by a rounding error
    assert pd.Series([v] * 3).mean() > v
    curve = pd.DataFrame({"seed": [0, 1, 2] * 2, "mode": ["end-to-end"] * 6, "alpha": [0.0] * 3 + [1.0] * 3,
                          "id_acc": [v] * 3 + [80.0, 81.0, 82.0], "ood_avg": [v] * 3 + [58.0, 59.0, 57.0]})
    plot_id_vs_ood(curve)  # raised "'xerr' must not contain negative values" before


def test_figures_render_themselves_in_a_notebook_whatever_the_backend(tmp_path):
    """IPython's display of a figure is a PNG (what a notebook cell ending in ``fig`` shows), not ``<Figure ...>``."""
    from IPython.core.formatters import DisplayFormatter

    from wiseft_lib.report.plots import NotebookFigure, show_images

    curve = pd.DataFrame({"mode": ["end-to-end"] * 3, "alpha": [0.0, 0.5, 1.0], "id_acc": [70.0, 80.0, 81.0],
                          "ood_avg": [50.0, 55.0, 45.0]})
    figures = [plot_id_vs_ood(curve),
               show_images([np.zeros((8, 8), dtype=np.uint8)] * 2, ["a", "b"], ncols=2)]
    save_figure(figures[0], tmp_path / "curve")
    for fig in figures:
        assert isinstance(fig, NotebookFigure)
        data, _ = DisplayFormatter().format(fig)
        assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n" and len(data["image/png"]) > 1000
        assert not data["text/plain"].startswith("<Figure"), data["text/plain"]
    assert f"saved as {tmp_path / 'curve.png'}" in DisplayFormatter().format(figures[0])[0]["text/plain"]
