"""Tests for detkit.evaluation.html: escaped cells with sortable values, and images linked or embedded."""

from __future__ import annotations

import base64
import re

import numpy as np

from detkit.evaluation.html import Page, cell, figure, table


def test_cells_escape_text_and_carry_sort_values():
    assert cell("<b>&") == "<td>&lt;b&gt;&amp;</td>"
    assert cell(np.int64(3)) == '<td class="num" data-v="3">3</td>'
    assert cell(np.float64(0.12345)) == '<td class="num" data-v="0.12345">0.123</td>'
    assert cell(float("nan")) == cell(-1.0) == '<td class="num" data-v="-1e308">-</td>'
    assert cell(True) == "<td>True</td>"


def test_table_is_sortable_and_scrolls():
    out = table(["class", "ap"], [["a", 0.5], ["b", 0.25]], table_id="t")
    assert out.startswith('<div class="scroll"><table id="t" class="sortable">')
    assert out.count("<tr>") == 3
    assert 'class="sortable"' not in table(["x"], [[1]], sortable=False, scroll=False)


def test_page_links_or_embeds_images(tmp_path):
    picture = tmp_path / "figures" / "a.png"
    picture.parent.mkdir()
    picture.write_bytes(b"\x89PNG fake")
    linked = Page(tmp_path, "t <1>")
    linked.add("one", "One", figure(linked.image(picture), "caption"))
    html = linked.write().read_text()
    assert '<section id="one">' in html and 'src="figures/a.png"' in html and "t &lt;1&gt;" in html
    assert not re.search(r"(src|href)=\"https?://", html), "the page must not load anything from the network"
    embedded = Page(tmp_path, "t", embed=True)
    src = embedded.image(picture)
    assert src.startswith("data:image/png;base64,") and base64.b64decode(src.split(",", 1)[1]) == b"\x89PNG fake"
