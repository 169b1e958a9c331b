"""The report: self-contained, escaped, every image decodes, and it loads in a real browser."""
from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from run_fixtures import HOSTILE
from sg3probe.cli.plugin_commands import report as report_command
from sg3probe.report.render import render_report
from sg3probe.runs import RunFolderError

CHROMIUM = Path("/usr/bin/chromium")


class _Page(HTMLParser):
    """Collects every URL-bearing attribute, the images, ids and the text of <script>s."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.images: list[dict[str, str]] = []
        self.ids: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append(tag)
        if "id" in attributes:
            self.ids.append(attributes["id"])
        if tag == "img":
            self.images.append(attributes)
        for name in ("src", "href", "srcset", "action", "poster", "data"):
            if name in attributes:
                self.urls.append((tag, name, attributes[name] or ""))


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def test_report_is_self_contained_and_every_image_decodes(run_dir):
    path = render_report(run_dir)
    assert path == run_dir / "report.html"
    html = path.read_text(encoding="utf-8")
    page = _parse(html)

    for tag, name, url in page.urls:
        assert url.startswith("#") or url.startswith("data:image/png;base64,"), (tag, name, url)
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html).replace("http-equiv", "")
    assert not re.search(r"https?:|//[a-z]", text, re.I)
    assert "url(" not in html  # no CSS-fetched resource either

    # 2 figures of the fixed result, 1 of the hostile one, 1 sample grid
    assert len(page.images) == 4
    for image in page.images:
        png = base64.b64decode(image["src"].removeprefix("data:image/png;base64,"), validate=True)
        with Image.open(io.BytesIO(png)) as decoded:
            decoded.load()
            assert decoded.format == "PNG"
            assert decoded.size == (int(image["width"]), int(image["height"]))
    assert len(page.ids) == len(set(page.ids))


def test_report_shows_every_part(run_dir):
    html = render_report(run_dir).read_text(encoding="utf-8")
    for text in ("DCI disentanglement", "W is more disentangled than Z.", "Per space",
                 "D, C and I of each space.", "D, C, I per space", "n_samples", "w.D",
                 "Sample grids", "grid-aligned", "ab" * 32, "/models/toyfaces.pt",
                 "n_train = 10", "time of analyze (s)", 'id="table-disentanglement-per_attribute"'):
        assert text in html, text
    # sections first, then the rest in insertion order
    assert html.index("dci bars") < html.index("Tables and figures") < html.index("importance")


def test_names_and_texts_from_plugins_are_escaped(run_dir):
    html = render_report(run_dir).read_text(encoding="utf-8")
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "script" not in _parse(html).tags


def test_rendering_twice_gives_the_same_bytes(run_dir):
    first = render_report(run_dir).read_bytes()
    assert render_report(run_dir).read_bytes() == first


def test_failed_run_says_so(run_dir):
    run_json = run_dir / "run.json"
    run_json.write_text(run_json.read_text().replace('"status": "complete"',
                                                      '"status": "failed", "error": "boom"'))
    html = render_report(run_dir).read_text(encoding="utf-8")
    assert "This run failed: boom." in html


def test_report_command_rebuilds_from_the_folder_alone(run_dir):
    (run_dir / "report.html").unlink(missing_ok=True)
    result = CliRunner().invoke(report_command, [str(run_dir)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(run_dir / "report.html")
    assert (run_dir / "report.html").is_file()


def test_report_of_a_folder_that_is_no_run(tmp_path):
    with pytest.raises(RunFolderError, match="not a run folder"):
        render_report(tmp_path)


# A probe appended to a copy of the report: once everything has loaded, it writes each image's
# natural width into the DOM, which --dump-dom then prints. The report's CSP forbids scripts,
# so the copy drops it; the report itself stays script-free.
_PROBE = """<script>
window.addEventListener("load", function () {
  var images = document.images;
  for (var i = 0; i < images.length; i++) {
    images[i].setAttribute("data-natural-width", String(images[i].naturalWidth));
  }
  document.body.setAttribute("data-probe", "images:" + images.length);
});
</script>"""


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
def test_every_image_loads_in_headless_chromium(run_dir, tmp_path):
    html = render_report(run_dir).read_text(encoding="utf-8")
    probed = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    probed = probed.replace("</body>", _PROBE + "</body>")
    page = tmp_path / "probed.html"
    page.write_text(probed, encoding="utf-8")

    completed = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--no-first-run", "--disable-extensions",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stderr[-2000:]
    dom = _parse(completed.stdout)
    assert 'data-probe="images:4"' in completed.stdout, completed.stdout[-2000:]
    widths = [int(image["data-natural-width"]) for image in dom.images]
    assert len(widths) == 4 and all(width > 0 for width in widths), widths
