"""LoRA adapters: one data model (LoraModule, LoraAdapter), one reader per file format, validation.

    from asymviz.adapters import load_adapter
    adapter = load_adapter("path/to/adapter")    # folder, .zip, .safetensors, .bin/.pt, or org/name on the Hub
    adapter.format, adapter.scaling_source       # "kohya", "alpha tensor"; adapter.info() has it all
    for m in adapter:                             # LoraModule: A (r, d_in), B (d_out, r), scaling
        ...

Modules: model (the data model), config (adapter_config.json), formats (which reader, in a fixed order),
one reader per format: peft (PEFT's key layout, incl. MoE target_parameters), adalora, kohya, diffusers,
mlx_lm, torchtune, unsupported (named refusals); pairs (checks the readers share), tensors (where tensors
come from), safetensors_file, archive, torch_file (legacy .bin checkpoints, weights only) and files (regular
files only, bounded reads): validation before anything is read; hub (Hub repo ids), loader (load_adapter).
"""

from asymviz.adapters.config import AdapterConfig
from asymviz.adapters.formats import FORMATS
from asymviz.adapters.formats import detect as detect_format
from asymviz.adapters.loader import load_adapter
from asymviz.adapters.model import SUMMARY_COLUMNS, LoraAdapter, LoraModule, ModuleSpec, count_nonfinite
from asymviz.adapters.peft import from_state_dict, module_name, parse_layer

__all__ = [
    "SUMMARY_COLUMNS",
    "FORMATS",
    "AdapterConfig",
    "LoraAdapter",
    "LoraModule",
    "ModuleSpec",
    "count_nonfinite",
    "detect_format",
    "from_state_dict",
    "load_adapter",
    "module_name",
    "parse_layer",
]
