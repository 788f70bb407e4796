"""Checks of a curation report page (``curation.report``), reusable by tests and by hand.

- :func:`check_report_html`: parses the page with ``html.parser`` and asserts its structure (sections,
  figures, threshold lines, examples whose audio exists, flagged empty labels, leakage and results tables,
  nothing fetched from the network);
- :func:`open_in_chromium`: loads the page in headless Chromium and returns the DOM after load, the
  console messages and a screenshot. A probe script, added to a copy of the page, asks every ``<audio>``
  for its metadata (media elements hold the page's load event until they have it or fail, so
  ``--dump-dom`` sees the outcome), reports failed loads and uncaught errors through ``console.error``,
  and tags each console message with its level (this Chromium logs every console message as
  ``INFO:CONSOLE``);
- :func:`console_errors`, :func:`is_blank_png`: what a test asserts on.

By hand: ``python tests/report_checks.py out/report.html`` prints the problems found.
"""

from __future__ import annotations

import html.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile

PROBE_MARK = "report-check-probe"
_PROBE = """<script id="PROBE_MARK">
(function () {
  var tag = function (level, orig) { return function () {
    var args = Array.prototype.slice.call(arguments);
    orig.apply(console, ["[" + level + "] " + args.map(String).join(" ")]); }; };
  console.error = tag("error", console.error);
  console.warn = tag("warning", console.warn);
  window.addEventListener("error", function (e) {
    if (e.target && e.target !== window && (e.target.src || e.target.href)) {
      console.error("resource failed: " + (e.target.getAttribute("src") || e.target.getAttribute("href")));
    } else {
      console.error("uncaught: " + e.message);
    }
  }, true);
  window.addEventListener("unhandledrejection", function (e) { console.error("unhandled rejection: " + e.reason); });
  document.addEventListener("DOMContentLoaded", function () {
    var aus = document.querySelectorAll("audio");
    for (var i = 0; i < aus.length; i++) { (function (a) {
      a.addEventListener("loadedmetadata", function () {
        console.log("audio ok " + a.getAttribute("src") + " " + a.duration.toFixed(2) + "s"); });
      a.addEventListener("error", function () {
        console.error("audio failed: " + a.getAttribute("src") + " (code " + (a.error && a.error.code) + ")"); });
      a.preload = "metadata"; a.load();
    })(aus[i]); }
  });
  window.addEventListener("load", function () {
    var svgs = document.querySelectorAll("svg"), empty = 0;
    for (var i = 0; i < svgs.length; i++) { var r = svgs[i].getBoundingClientRect();
      if (!(r.width > 0 && r.height > 0)) { empty++; } }
    if (empty) { console.error(empty + " svg figure(s) not rendered"); }
    console.log("page loaded: " + svgs.length + " svg, " + document.querySelectorAll("audio").length + " audio");
  });
})();
</script>""".replace("PROBE_MARK", PROBE_MARK)

# "[pid:tid:date:INFO:CONSOLE:13] "msg", source: file:///x.html (13)" (also the older "CONSOLE(13)" form).
_CONSOLE = re.compile(r':CONSOLE[:(]?(\d*)\)?\]\s*"(.*)", source: (.*?) \((\d+)\)\s*$')


class NoChromium(RuntimeError):
    """No Chromium or Chrome binary on PATH."""


def chromium_binary():
    """The Chromium (or Chrome) executable on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


# ------------------------------------------------------------------ static checks
class _Page(html.parser.HTMLParser):
    """The elements of a page as ``(tag, attrs, ancestors' ids)``, and its text per section id."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements, self.stack, self.text = [], [], {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        sections = [a.get("id") for _, a in self.stack if a.get("id")]
        self.elements.append((tag, attrs, sections))
        if tag not in self.VOID:
            self.stack.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):
        sections = [a.get("id") for _, a in self.stack if a.get("id")]
        self.elements.append((tag, dict(attrs), sections))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        for _, a in self.stack:
            if a.get("id"):
                self.text[a["id"]] = self.text.get(a["id"], "") + data

    def inside(self, section_id, tag=None, cls=None):
        return [(t, a) for t, a, ids in self.elements if section_id in ids and (tag is None or t == tag)
                and (cls is None or cls in (a.get("class") or "").split())]


def parse_page(path):
    page = _Page()
    with open(path, encoding="utf-8") as f:
        page.feed(f.read())
    page.close()
    return page


def check_report_html(path, expect_sets, expect_examples=None, expect_empty_labels=None, expect_leaks=None,
                      expect_results=True):
    """Asserts the structure of a report page; returns the parsed page.

    Arguments
    ---------
    path : str
        ``report.html``.
    expect_sets : list of (slug, kind)
        The sets the page must show, e.g. ``[("du", "du"), ("ds-esc50", "ds"), ("ads-esc50", "ads")]``.
    expect_examples : dict, optional
        ``{slug: number of example rows}`` (default: 20 each).
    expect_empty_labels : dict, optional
        ``{slug: [labels]}`` that must be flagged empty (and no other label of the set).
    expect_leaks : bool, optional
        True: a leakage counts table; False: "no leaks found"; None: either.
    expect_results : bool
        The results table and its chart with whiskers.
    """
    folder = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        raw = f.read()
    assert not re.search(r"https?://", raw), "the page references the network (http:// or https://)"
    assert not re.search(r"<(script|link|iframe|img)\b", raw), "the page loads scripts, styles or images"
    page = parse_page(path)
    ids = {a.get("id") for _, a, _ in page.elements if a.get("id")}
    expected_ids = {f"set-{slug}" for slug, _ in expect_sets} | {"leakage", "results", "contents"}
    assert expected_ids <= ids, f"sections missing: {sorted(expected_ids - ids)}"
    links = {a.get("href") for t, a, _ in page.elements if t == "a"}
    assert {f"#{i}" for i in expected_ids - {"contents"}} <= links, "the contents list misses a section"
    for slug, kind in expect_sets:
        sid = f"set-{slug}"
        hists = page.inside(sid, "svg", "fig-hist")
        assert len(hists) == 1, f"{sid}: {len(hists)} histogram(s)"
        thresholds = page.inside(sid, "line", "threshold")
        if kind in ("du", "ads"):
            assert len(page.inside(sid, "svg", "fig-curve")) == 1, f"{sid}: no pairs-vs-threshold curve"
            assert page.inside(sid, "polyline", "curve"), f"{sid}: the curve is empty"
            assert page.inside(sid, "circle", "csv-pairs"), f"{sid}: the CSV's pair count is not marked"
            assert len(thresholds) == 2, f"{sid}: {len(thresholds)} threshold lines (histogram + curve)"
        else:
            assert len(thresholds) == 1, f"{sid}: {len(thresholds)} threshold lines"
            assert len(page.inside(sid, "svg", "fig-labels")) == 1, f"{sid}: no captions-per-label chart"
            flagged_rows = [a for _, a in page.inside(sid, "tr", "empty")]
            if expect_empty_labels is not None:
                want = expect_empty_labels.get(slug, [])
                assert len(flagged_rows) == len(want), f"{sid}: {len(flagged_rows)} empty label rows, expected {want}"
                text = page.text.get(sid, "")
                for label in want:
                    assert label in text, f"{sid}: the empty label {label} is not named"
                if want:
                    assert len(page.inside(sid, "g", "empty")) == len(want), f"{sid}: empty labels not drawn"
                    assert "none" in text, f"{sid}: the word 'none' is missing"
        audios = page.inside(sid, "audio")
        want = (expect_examples or {}).get(slug, 20)
        assert len(page.inside(sid, "tr", "example")) == want, f"{sid}: expected {want} examples"
        assert len(audios) == want, f"{sid}: {len(audios)} <audio> elements, expected {want}"
        for _, a in audios:
            src = a.get("src") or ""
            assert src and not os.path.isabs(src), f"{sid}: audio src {src!r} is not relative"
            assert os.path.isfile(os.path.join(folder, src)), f"{sid}: audio file missing: {src}"
            assert a.get("preload") == "none", f"{sid}: audio {src} is preloaded"
    leak_text = page.text.get("leakage", "")
    if expect_leaks is True:
        assert page.inside("leakage", "table", "leakage-counts"), "no leakage counts table"
    elif expect_leaks is False:
        assert "no leaks found" in leak_text, "the page does not say 'no leaks found'"
    if expect_results:
        assert page.inside("results", "table"), "no results table"
        assert page.inside("results", "svg", "fig-results"), "no results chart"
        assert page.inside("results", "path", "whisker"), "the results chart has no interval whiskers"
    return page


# ------------------------------------------------------------------ browser
def _run(binary, args, timeout):
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           "--hide-scrollbars", "--mute-audio", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def console_messages(stderr):
    """``[{"level", "text", "source", "line"}]`` of the console lines in Chromium's log."""
    out = []
    for line in stderr.splitlines():
        m = _CONSOLE.search(line)
        if not m:
            continue
        text = m.group(2)
        level = "info"
        for tag in ("error", "warning"):
            if text.startswith(f"[{tag}] "):
                level, text = tag, text[len(tag) + 3:]
        if text.startswith("Uncaught"):
            level = "error"
        out.append({"level": level, "text": text, "source": m.group(3), "line": int(m.group(4))})
    return out


def console_errors(messages):
    """The error messages among :func:`console_messages`."""
    return [m for m in messages if m["level"] == "error"]


def open_in_chromium(path, screenshot=True, window=(1200, 3000), timeout=120):
    """Loads a page in headless Chromium: ``(dom, console_messages, png_bytes or None)``.

    The DOM is the one after the load event (probe script removed). Raises :class:`NoChromium` when no
    browser is installed.
    """
    binary = chromium_binary()
    if binary is None:
        raise NoChromium("no chromium: apt-get install chromium")
    path = os.path.abspath(path)
    with open(path, encoding="utf-8") as f:
        page = f.read()
    probed = re.sub(r"(<head[^>]*>)", lambda m: m.group(1) + _PROBE, page, count=1, flags=re.I)
    if probed == page:
        probed = _PROBE + page
    fd, copy = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".check-", suffix=".html")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(probed)
        proc = _run(binary, ["--dump-dom", "file://" + copy], timeout)
        if proc.returncode != 0 or "</html>" not in proc.stdout:
            raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
        dom = re.sub(f'<script id="{PROBE_MARK}">.*?</script>', "", proc.stdout, count=1, flags=re.S)
        messages = console_messages(proc.stderr)
    finally:
        os.remove(copy)
    png = None
    if screenshot:
        shot_dir = tempfile.mkdtemp(prefix="chromium-shot-")
        try:
            shot = os.path.join(shot_dir, "page.png")
            proc = _run(binary, [f"--screenshot={shot}", f"--window-size={window[0]},{window[1]}",
                                 "file://" + path], timeout)
            if not os.path.isfile(shot):
                raise RuntimeError(f"chromium wrote no screenshot ({proc.returncode}): {proc.stderr[-2000:]}")
            with open(shot, "rb") as f:
                png = f.read()
        finally:
            shutil.rmtree(shot_dir, ignore_errors=True)
    return dom, messages, png


def is_blank_png(png):
    """True if every pixel of the PNG has the same colour."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        extrema = im.convert("RGB").getextrema()
    return all(lo == hi for lo, hi in extrema)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python tests/report_checks.py REPORT.html")
        return 2
    dom, messages, png = open_in_chromium(argv[0])
    for m in messages:
        print(f"{m['level']:8s}{m['text']}")
    errors = console_errors(messages)
    print(f"{len(errors)} console error(s); screenshot {'blank' if is_blank_png(png) else 'not blank'}; "
          f"{dom.count('<svg')} svg, {dom.count('<audio')} audio in the DOM")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
