"""`make reproduce`'s offline gallery (site/index.html and the notebook pages): checked as HTML, then in Chromium."""
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import pandas as pd
import pytest
from test_reproduce import GOOD, make_project  # also skips this module without papermill

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PAPER = "https://arxiv.org/abs/2109.01903"  # the one external address allowed: a link (<a href>), never loaded
STUDIES = ("a_broken", "b_good")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A synthetic project reproduced in smoke mode (one failing notebook, one good), with a claims table that
    has a failing and a within-noise claim; its ``outputs/mini/site``."""
    from wiseft_lib.reproduce import reproduce

    root = tmp_path_factory.mktemp("project")
    claims = ('pd.DataFrame({"claim": ["gain > 0", "<b>a & b</b>", "shown only"], "holds": [True, False, None], '
              '"value_pp": [3.0, -0.5, 1.0], "bar_pp": ["> 0", "> 0", "(reported)"], '
              '"within_noise": [False, True, None]}).to_csv(out / "claims.csv", index=False)')
    good = GOOD.replace("\nfig\n", f"\n{claims}\nfig\n")  # before the last line: the cell still shows the figure
    assert good != GOOD
    make_project(root, {"a_broken": "raise RuntimeError('the GPU caught <fire>')", "b_good": good},
                 mini=STUDIES)
    runs = reproduce("mini", root=root, smoke=True)
    assert [(r.name, r.status) for r in runs] == [("a_broken", "failed"), ("b_good", "ok")]
    return root / "outputs" / "mini" / "site"


class _Refs(HTMLParser):
    """Every ``(tag, attribute, value)`` of an ``href`` or ``src``, the ids, the study cards and the CSS text."""

    def __init__(self) -> None:
        super().__init__()
        self.refs, self.ids, self.cards, self.css, self._in_style = [], set(), [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.refs += [(tag, key, attrs[key]) for key in ("href", "src") if attrs.get(key) is not None]
        self.ids.add(attrs.get("id"))
        if tag == "section" and "study-card" in (attrs.get("class") or "").split():
            self.cards.append(attrs.get("id"))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.css.append(data)


def _parse(page: Path) -> _Refs:
    parser = _Refs()
    parser.feed(page.read_text())
    return parser


def _check_offline_and_resolved(page: Path) -> _Refs:
    """No address on the web is loaded (src, <link href>, CSS @import / url()); every local reference exists."""
    refs = _parse(page)
    css = " ".join(refs.css)
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", css, re.I), f"{page.name}: external CSS"
    for tag, key, value in refs.refs:
        if value.startswith("data:"):
            continue
        where = f"{page.name}: <{tag} {key}={value[:80]!r}>"
        if value.startswith(("http://", "https://", "//")):
            assert tag == "a" and key == "href" and (page.name != "index.html" or value == PAPER), where
            continue
        parts = urlsplit(value)
        assert not parts.scheme and not parts.netloc and not parts.path.startswith("/"), f"not relative: {where}"
        target = (page.parent / unquote(parts.path)) if parts.path else page
        assert target.is_file(), f"missing target: {where}"
        if parts.fragment and target == page:
            assert {parts.fragment, unquote(parts.fragment)} & refs.ids, f"no such id: {where}"
    return refs


def test_site_has_a_card_per_study_and_every_reference_is_local(site):
    index = site / "index.html"
    refs = _check_offline_and_resolved(index)
    assert refs.cards == list(STUDIES)
    pages = sorted(p.name for p in site.glob("*.html"))
    assert pages == ["a_broken.html", "b_good.html", "index.html"]  # papermill keeps the failed notebook too
    for page in pages:
        _check_offline_and_resolved(site / page)
    html = index.read_text()
    assert 'src="../b_good/figure.png"' in html and 'href="b_good.html"' in html
    assert "the GPU caught &lt;fire&gt;" in html and "<fire>" not in html  # the failure, escaped
    assert "&lt;b&gt;a &amp; b&lt;/b&gt;" in html  # claims are text, not HTML
    assert "1 of 2 claims hold, 1 within noise" in html and "fails" in html and "reported" in html
    assert 'src="data:image/png;base64,' in (site / "b_good.html").read_text()  # the figure, inside the page
    assert "<script" not in html.lower()


def _browser(tmp_path: Path):
    """A headless Chromium that cannot resolve any host (an external fetch would log an error)."""
    why = [f"{p} is missing" for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        why.append("selenium is not installed (the dev extra)")
    if why:
        message = f"no headless Chromium: {'; '.join(why)}. Install it: sudo apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set: {message}", pytrace=False)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND",
                "--window-size=1600,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


_IMAGES = "return Array.from(document.images).map(i => [i.src.slice(0, 60), i.complete, i.naturalWidth])"
_LINKS = ("return Array.from(document.querySelectorAll('a[href]')).map(a => [a.getAttribute('href'), a.href, "
          "a.hash && a.pathname === location.pathname ? !!(document.getElementById(a.hash.slice(1)) || "
          "document.getElementById(decodeURIComponent(a.hash.slice(1)))) : true])")


def test_site_renders_offline_in_headless_chromium(site, tmp_path):
    driver = _browser(tmp_path)
    try:
        for page, n_images in (("index.html", 1), ("a_broken.html", 0), ("b_good.html", 1)):
            driver.get((site / page).as_uri())
            if page == "index.html":
                assert len(driver.find_elements("css selector", "section.study-card")) == len(STUDIES)
                height = driver.execute_script("return document.documentElement.scrollHeight")
                driver.set_window_size(1600, min(max(height, 600), 8000))
                shot = tmp_path / "index.png"
                assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 0
            images = driver.execute_script(_IMAGES)
            assert len(images) == n_images and all(done and width > 0 for _, done, width in images), (page, images)
            for href, url, anchor_found in driver.execute_script(_LINKS):
                if url.startswith("file:"):
                    assert Path(unquote(urlsplit(url).path)).is_file() and anchor_found, (page, href)
                else:
                    assert url == PAPER, (page, href)
            severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not severe, (page, severe)
    finally:
        driver.quit()


def test_an_unreadable_notebook_costs_only_its_page_and_a_claims_table_without_claim_column_shows(tmp_path):
    """A notebook nbconvert cannot read costs only its own page (the card says why); Table 1's claims (no `claim`
    column) show their other columns."""
    from wiseft_lib.report.site import build_site

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "x.ipynb").write_text("not json")
    pd.DataFrame({"head": ["E2E", "LC"], "agree": [13, 5], "of": [14, 14], "bar": [">= 10", "(reported)"],
                  "holds": [True, None]}).to_csv(tmp_path / "x" / "claims.csv", index=False)  # Table 1's: no `claim`
    pd.DataFrame({"study": ["x", "total"], "wall_s": [130.0, 130.0]}).to_csv(tmp_path / "profile.csv", index=False)
    run = SimpleNamespace(name="x", status="ok", seconds=130.0, output_dir=tmp_path / "x",
                          notebook=tmp_path / "x" / "x.ipynb", error="", figures=[], source="cache")
    html = build_site([run], tmp_path, "mini", titles={"x": "Study X"}).read_text()
    assert "Study X" in html and "notebook page not rendered" in html and "2 min 10 s" in html
    assert "head E2E, agree 13, of 14" in html and "(bar &gt;= 10)" in html
    assert '<h2 id="profile">' in html and "<td>total</td>" in html and 'href="#profile"' in html
    assert "1 of 1 claims hold" in html and "from the run cache" in html and not (tmp_path / "site" / "x.html").exists()
