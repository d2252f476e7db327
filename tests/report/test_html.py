"""The HTML page builder: escaping, embedded images, number formatting."""
from __future__ import annotations

from stackslim.report import Page, fmt


def test_fmt():
    assert fmt(1234567) == "1,234,567"
    assert fmt(0.123456) == "0.123"
    assert fmt(1234.5) == "1,234"
    assert fmt(None) == "–" and fmt(float("nan")) == "–"
    assert fmt(True) == "yes"


def test_page_escapes_and_embeds(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.savefig(tmp_path / "a.png")
    plt.close(fig)
    page = Page("<script>x</script>")
    page.images([(tmp_path / "a.png", "fig"), (tmp_path / "missing.png", "gone")])
    page.table([{"a": 1, "b": "<b>"}], [("a", "A"), ("b", "B")])
    path = page.write(tmp_path / "r.html")
    html = path.read_text()
    assert "<script>x" not in html and "&lt;script&gt;" in html
    assert "data:image/png;base64," in html and "missing: missing.png" in html
    assert "&lt;b&gt;" in html
