"""Cached asymviz calls shared by the pages: st.cache_data around calls that return frames.

Arguments are plain values (paths as str plus a file signature) so the cache keys are cheap and a changed
file gives a new entry. Heavy modules are imported inside the functions, never at module level.
"""

from __future__ import annotations

import streamlit as st

from app.components import load_adapter_cached

# ------------------------------------------------------------------------------------------------------------
# theory


@st.cache_data(max_entries=64, show_spinner=False)
def theory(d_in, d_out, r, spectrum, k, decay, delta_rank, draws, seed):
    """(draws, expected, comparison, by_rank, lam) for one TheoryConfig."""
    from asymviz import theory as th

    cfg = th.TheoryConfig(d_in=d_in, d_out=d_out, r=r, spectrum=spectrum, k=k, decay=decay,
                          delta_rank=delta_rank, draws=draws, seed=seed)  # fmt: skip
    draws_frame = th.simulate_excess_loss(cfg)
    expected = th.expected_excess_loss(cfg)
    return (
        draws_frame,
        expected,
        th.compare_with_closed_form(draws_frame, expected),
        th.expected_by_rank(cfg),
        th.input_spectrum(cfg),
    )


@st.cache_data(max_entries=64, show_spinner=False)
def bound(shapes: tuple[tuple[int, int, int], ...], n: int, q: float, sigma: float):
    from asymviz.bound import generalization_bound

    return generalization_bound(list(shapes), n=n, q=q, sigma=sigma)


# ------------------------------------------------------------------------------------------------------------
# one adapter


@st.cache_data(max_entries=32, show_spinner=False)
def adapter_summary(path: str, signature: str):
    """(module summary frame, problems list, config dict or None, extras dict)."""
    adapter = load_adapter_cached(path, signature)
    config = dict(adapter.config.raw) if adapter.config is not None else None
    return adapter.summary(), list(adapter.problems), config, dict(adapter.extras)


@st.cache_data(max_entries=32, show_spinner=False)
def spectrum(path: str, signature: str):
    """(singular_spectrum frame, spectrum_summary frame, problems) for every module and factor."""
    from asymviz.spectra import singular_spectrum, spectrum_summary

    adapter = load_adapter_cached(path, signature)
    return singular_spectrum(adapter), spectrum_summary(adapter), list(adapter.problems)


@st.cache_data(max_entries=32, show_spinner=False)
def adapter_bound(path: str, signature: str, n: int, q: float, sigma: float):
    from asymviz.bound import generalization_bound

    return generalization_bound(load_adapter_cached(path, signature), n=n, q=q, sigma=sigma)


@st.cache_data(max_entries=32, show_spinner=False)
def similarity(
    paths: tuple[str, ...], signatures: tuple[str, ...], names: tuple[str, ...], pairs: str = "upper"
):
    """pairwise_similarity of A, B and ΔW between adapters (modules matched by name)."""
    from asymviz.similarity import pairwise_similarity

    adapters = [load_adapter_cached(p, s) for p, s in zip(paths, signatures, strict=True)]
    return pairwise_similarity(adapters, names=list(names), pairs=pairs)


@st.cache_data(max_entries=16, show_spinner=False)
def report_html(path: str, signature: str, against: tuple[str, str] | None = None) -> bytes:
    """The standalone HTML report of asymviz.report for one adapter (optionally against a second)."""
    import tempfile
    from pathlib import Path

    from asymviz.report import write_report

    adapter = load_adapter_cached(path, signature)
    other = load_adapter_cached(*against) if against else None
    with tempfile.TemporaryDirectory() as tmp:
        out = write_report(adapter, Path(tmp) / "report.html", against=other)
        return Path(out).read_bytes()
