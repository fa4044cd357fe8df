"""A standalone HTML report on one adapter (optionally against a second): the same figures as the app.

    asymviz report ADAPTER [--against ADAPTER] -o report.html
    write_report(load_adapter(path), "report.html", against=None)

The file embeds plotly.js once (about 4.7 MB), so it opens offline and can be mailed around. Every string
that came from the adapter (paths, module names, config values) is HTML-escaped.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from asymviz.adapters import LoraAdapter

# Illustrative inputs for the bound (an adapter does not say how it was trained): shown next to the table.
BOUND_DEFAULTS = {"n": 10_000, "q": 32, "sigma": 0.5}

_CSS = """
body { font-family: Inter, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
.meta { color: #555; } .caption { color: #555; font-size: .92rem; max-width: 60rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .6rem 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; } th { background: #f5f5f5; }
td:first-child, th:first-child { text-align: left; }
.problems { background: #fff6e5; border-left: 4px solid #e69f00; padding: .5rem 1rem; }
.scroll { max-height: 28rem; overflow: auto; }
"""


GENERIC_NAMES = ("adapter", "init", "adapter_model.safetensors", "adapter_model.bin", "adapter_model.pt")


def display_name(source: str) -> str:
    """What a reader calls an adapter: its file or folder name, with the folder above it when the name alone
    says nothing ('run_x/adapter', 'my-lora/adapter_model.safetensors')."""
    path = Path(str(source).rstrip("/"))
    if path.name in GENERIC_NAMES and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name or str(source)


def _table(frame: pd.DataFrame, digits: int = 4) -> str:
    shown = frame.copy()
    for col in shown.select_dtypes("float").columns:
        shown[col] = shown[col].map(lambda v: "" if v != v else f"{v:.{digits}g}")
    return f'<div class="scroll">{shown.to_html(index=False, escape=True, border=0)}</div>'


def render_report(
    adapter: LoraAdapter,
    against: LoraAdapter | None = None,
    progress: Callable[[int], None] | None = None,
    show_paths: bool = True,
) -> str:
    """The report as one HTML string (see module docstring).

    show_paths : False leaves out where the adapters were read from (a public server's upload folder): the
        report names them by file name only
    """
    import plotly.io as pio

    from asymviz import figures
    from asymviz.bound import generalization_bound
    from asymviz.similarity import adapter_similarity
    from asymviz.spectra import group_summary, singular_spectrum, spectrum_summary

    esc = html.escape
    spectrum = singular_spectrum(adapter, progress=progress)
    summary = spectrum_summary(adapter)
    first_plot = True

    def plot(fig) -> str:
        nonlocal first_plot
        out = pio.to_html(fig, full_html=False, include_plotlyjs=first_plot, config={"displaylogo": False})
        first_plot = False
        return out

    parts: list[str] = []
    ranks = sorted({m.r for m in adapter.modules})
    scalings = sorted({round(m.scaling, 6) for m in adapter.modules})
    name = display_name(adapter.source)
    parts.append(f"<h1>LoRA adapter report: {esc(name)}</h1>")
    parts.append(
        f'<p class="meta">source <code>{esc(adapter.source if show_paths else name)}</code> · base model '
        f"<code>{esc(str(adapter.base_model))}</code> · {len(adapter)} adapted modules · rank {esc(str(ranks))} · "
        f"scaling {esc(str(scalings))}{'' if adapter.scaling_known else ' (unknown: no config, 1 used)'} · "
        f"{adapter.trainable_params('ab'):,} LoRA parameters · made {_dt.datetime.now():%Y-%m-%d %H:%M} "
        f"by asymviz</p>"
    )
    if adapter.problems:
        items = "".join(f"<li>{esc(p)}</li>" for p in adapter.problems)
        parts.append(f'<div class="problems"><b>Notes</b><ul>{items}</ul></div>')

    parts.append("<h2>Singular spectra of A, B and ΔW</h2>")
    parts.append(plot(figures.spectrum_figure(spectrum)))
    parts.append(
        '<p class="caption">Each thin line is one module, the bold line the median over modules. A (r×d_in) and '
        "B (d_out×r) are the factors; ΔW = s·B·A is the update they make together, with s = α/r (α/√r with "
        "rsLoRA). A flat A spectrum with a steep ΔW spectrum means B, not A, decides which directions the "
        "update uses. ΔW's values come from an r×r core of QR factors, never from the dense matrix.</p>"
    )
    for value, label in (("effective_rank", "effective rank"), ("fro_norm", "Frobenius norm ‖ΔW‖_F"),
                         ("energy_top1", "share of energy in σ₁")):  # fmt: skip
        parts.append(plot(figures.layer_module_heatmap(summary, value, "delta", label)))
    parts.append(
        '<p class="caption">Per layer and module kind, for ΔW: effective rank (exp of the entropy of σ/Σσ; '
        "r means all directions are used equally, 1 means one direction dominates), the size of the update, "
        "and how much of it lies in its top direction.</p>"
    )
    parts.append("<h3>Per layer and per module kind (means over modules)</h3>")
    parts.append(_table(group_summary(summary, "layer")))
    parts.append(_table(group_summary(summary, "kind")))

    bounds = generalization_bound(adapter, **BOUND_DEFAULTS)
    parts.append("<h2>Trainable parameters and the generalisation bound</h2>")
    parts.append(plot(figures.bound_figure(bounds)))
    parts.append(_table(bounds))
    parts.append(
        f'<p class="caption">Zhu et al. 2024, Lemma 4.5: |gen| ≤ √(2·r·q·σ²·ln2/n · Σdims), Σdims = Σ(d_in+d_out) '
        f"for A&B, Σd_out for B only, Σd_in for A only. Illustrative inputs (the adapter does not record them): "
        f"n = {BOUND_DEFAULTS['n']:,} samples, q = {BOUND_DEFAULTS['q']} bits, σ = {BOUND_DEFAULTS['sigma']}. "
        "Only the ratios between modes are a property of the adapter.</p>"
    )

    if against is not None:
        sim = adapter_similarity(adapter, against, names=("this", "other"))
        parts.append(
            f"<h2>Against {esc(against.source if show_paths else display_name(against.source))}</h2>"
        )
        parts.append(plot(figures.module_similarity_figure(sim)))
        parts.append(
            '<p class="caption">Subspace similarity ‖U₁ᵀU₂‖²_F / min(k₁,k₂) per module, for the row space of A, '
            "the column space of B and the top-k column space of ΔW; 1 means the same subspace, the dashed line "
            "is what two random subspaces of the same dimensions give.</p>"
        )
        means = sim.groupby("which")[["similarity", "random_baseline"]].mean().reset_index()
        parts.append(_table(means))
        parts.append(_table(sim.drop(columns=["adapter_1", "adapter_2"])))

    parts.append("<h2>Modules</h2>")
    parts.append(_table(adapter.summary()))
    if adapter.extras:
        extras = ", ".join(f"{esc(k)} {list(v)}" for k, v in list(adapter.extras.items())[:50])
        parts.append(f'<p class="caption">Also in the file, not LoRA (modules_to_save, biases): {extras}</p>')
    body = "\n".join(parts)
    title = esc(f"{name}: LoRA adapter report (asymviz)")
    return f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title><style>{_CSS}</style></head><body>{body}</body></html>'


def write_report(
    adapter: LoraAdapter,
    path: str | Path,
    against: LoraAdapter | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write render_report(...) to `path` (atomically) and return the path."""
    import os

    path = Path(path)
    text = render_report(adapter, against=against, progress=progress)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
