"""Plotly figure builders shared by the web app and the standalone HTML report, one module per topic.

    from asymviz import figures as F
    summary = asymviz.results.summary_table(runs, "test_accuracy", by=("task", "mode"))
    fig = F.mode_bar_figure(summary, "test accuracy")
    html = F.figure_html(fig)               # standalone, works offline (plotly.js embedded)

Every builder is a pure function: a tidy frame in (the columns each one reads are listed in its docstring), a
`plotly.graph_objects.Figure` out. No streamlit, no file access, no statistics (means and standard errors over
seeds come from asymviz.results); one colour per mode everywhere (style.MODE_COLORS).

    style       colours, labels, template, the blank figure
    runs        metric by mode, parameter counts, learning curves, drift from init
    adapter     spectra, layer × module map, subspace similarity
    alignment   alignment with data and base weights, diagnostics
    theory      the theory page's simulations and the generalisation bound
    replication the replication's experiments: d/r sweep, head factorial, mechanism test, 2×2 similarity
    export      HTML and PNG files
"""

from asymviz.figures.adapter import (
    layer_module_heatmap,
    module_similarity_figure,
    shared_directions_figure,
    similarity_heatmaps,
    spectrum_figure,
)
from asymviz.figures.alignment import (
    ALIGN_VALUES,
    DIAGNOSTIC_PANELS,
    SOURCE_LABELS,
    alignment_layer_figure,
    alignment_mode_figure,
    alignment_panel_title,
    diagnostics_figure,
)
from asymviz.figures.export import figure_html, figure_png
from asymviz.figures.replication import (
    head_factorial_figure,
    mechanism_figure,
    pair_label,
    rank_sweep_figure,
    similarity_2x2_figure,
)
from asymviz.figures.runs import (
    DRIFT_LABELS,
    drift_figure,
    learning_curve_figure,
    mode_bar_figure,
    near_data_range,
    params_bar_figure,
)
from asymviz.figures.style import (
    ALL_MODES,
    FONT,
    MODE_COLORS,
    MODE_DASH,
    MODE_LABELS,
    MODE_SYMBOLS,
    TEMPLATE,
    WHICH_COLORS,
    WHICH_LABELS,
    empty_figure,
    format_mean_se,
    mode_label,
    module_roles,
    ordered_modes,
    readable_log_axis,
)
from asymviz.figures.theory import bound_figure, excess_loss_figure, input_spectrum_figure, rank_curve_figure
from asymviz.modes import LORA_MODES as MODES  # the three LoRA modes; ALL_MODES adds the head_only control

__all__ = [
    "ALIGN_VALUES", "ALL_MODES", "DIAGNOSTIC_PANELS", "DRIFT_LABELS", "FONT", "MODES", "MODE_COLORS", "MODE_DASH",
    "MODE_LABELS", "MODE_SYMBOLS", "SOURCE_LABELS", "TEMPLATE", "WHICH_COLORS", "WHICH_LABELS",
    "alignment_layer_figure", "alignment_mode_figure", "alignment_panel_title", "bound_figure",
    "diagnostics_figure", "drift_figure", "empty_figure", "excess_loss_figure", "figure_html", "figure_png",
    "format_mean_se", "head_factorial_figure", "input_spectrum_figure", "layer_module_heatmap", "learning_curve_figure", "mode_bar_figure",
    "mechanism_figure", "mode_label", "module_roles", "module_similarity_figure", "near_data_range", "ordered_modes", "pair_label",
    "params_bar_figure", "rank_curve_figure", "rank_sweep_figure", "readable_log_axis", "shared_directions_figure",
    "similarity_2x2_figure", "similarity_heatmaps", "spectrum_figure",
]  # fmt: skip
