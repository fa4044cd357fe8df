"""asymviz.report: a standalone page with the figures, and everything from the file escaped."""

from __future__ import annotations

import pytest
from conftest import random_factors

from asymviz.adapters import load_adapter
from asymviz.errors import AdapterError
from asymviz.report import render_report, write_report


def test_report_sections_and_single_plotly_bundle(llama_like, tmp_path):
    adapter = load_adapter(llama_like)
    path = write_report(adapter, tmp_path / "r.html", against=load_adapter(llama_like))
    text = path.read_text()
    for section in ("Singular spectra", "generalisation bound", "Against", "Modules"):
        assert section in text
    assert text.count("plotly.js v") <= 2  # the library once (its banner may repeat once)
    assert not (tmp_path / "r.html.tmp").exists()


def test_hostile_names_never_reach_html(make_adapter):
    folder = make_adapter(
        {"model.layers.0.q_proj": random_factors(4, 8, 8)}, name="x<script>alert(1)</script>"
    )
    text = render_report(load_adapter(folder))
    assert "<script>alert(1)" not in text and "&lt;script&gt;" in text
    with pytest.raises(AdapterError, match="not a module name"):
        load_adapter(make_adapter({"model.<img src=x onerror=alert(1)>.q": random_factors(4, 8, 8)}))
