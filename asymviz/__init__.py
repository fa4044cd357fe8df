"""asymviz: see and test the asymmetry of LoRA's A and B factors on any PEFT adapter.

The package imports nothing heavy at top level; the public names below load their module on first use,
so `import asymviz` stays fast for the app's first paint.
"""

from importlib import import_module


def _read_version() -> str:
    """The installed distribution's version (importlib.metadata); in a checkout that was never installed, the
    version in its pyproject.toml; else "0+unknown". Never raises: `asymviz --version` must always answer."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("asymviz")
    except PackageNotFoundError:
        pass
    import re
    from pathlib import Path

    try:
        text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    except OSError:
        return "0+unknown"
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, flags=re.MULTILINE)
    return match.group(1) if match else "0+unknown"


__version__ = _read_version()

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
    "analyze_collection": "asymviz.collection",
    "CollectionConfig": "asymviz.collection",
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
