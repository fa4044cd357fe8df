"""asymviz: see and test the asymmetry of LoRA's A and B factors on any PEFT adapter.

The package imports nothing heavy at top level; the public names below load their module on first use,
so `import asymviz` stays fast for the app's first paint.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "AsymvizError": "asymviz.errors",
    "AdapterError": "asymviz.errors",
    "ConfigError": "asymviz.errors",
    "LoraAdapter": "asymviz.adapters",
    "LoraModule": "asymviz.adapters",
    "load_adapter": "asymviz.adapters",
    "singular_spectrum": "asymviz.spectra",
    "spectrum_summary": "asymviz.spectra",
    "subspace_similarity": "asymviz.similarity",
    "adapter_similarity": "asymviz.similarity",
    "pairwise_similarity": "asymviz.similarity",
    "principal_angles": "asymviz.similarity",
    "phi_grid": "asymviz.similarity",
    "drift_from_init": "asymviz.drift",
    "generalization_bound": "asymviz.bound",
    "group_summary": "asymviz.spectra",
    "module_principal_angles": "asymviz.similarity",
    "write_report": "asymviz.report",
    "RunStore": "asymviz.runs",
    "list_runs": "asymviz.runs",
    "TrainConfig": "asymviz.training.config",
    "preset": "asymviz.training.config",
    "train": "asymviz.training.loop",
    "sweep": "asymviz.training.sweep",
    "align": "asymviz.probes.alignment",
    "alignment_table": "asymviz.probes.alignment",
    "diagnose": "asymviz.probes.diagnostics",
    "intruder_dimensions": "asymviz.probes.diagnostics",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'asymviz' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
