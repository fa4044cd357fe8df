"""LoRA adapters: one data model (LoraModule, LoraAdapter), one reader per file format, validation.

    from asymviz.adapters import load_adapter
    adapter = load_adapter("path/to/adapter")    # folder, .zip, .safetensors, legacy .bin
    for m in adapter:                             # LoraModule: A (r, d_in), B (d_out, r), scaling
        ...

Modules: model (the data model), config (adapter_config.json), peft (PEFT's key layout), tensors (where
tensors come from), safetensors_file and archive (validation before anything is read), torch_file (legacy
.bin checkpoints, weights only), files (regular files only, bounded reads), loader (load_adapter).
"""

from asymviz.adapters.config import AdapterConfig
from asymviz.adapters.loader import load_adapter
from asymviz.adapters.model import SUMMARY_COLUMNS, LoraAdapter, LoraModule, ModuleSpec, count_nonfinite
from asymviz.adapters.peft import from_state_dict, module_name, parse_layer

__all__ = [
    "SUMMARY_COLUMNS",
    "AdapterConfig",
    "LoraAdapter",
    "LoraModule",
    "ModuleSpec",
    "count_nonfinite",
    "from_state_dict",
    "load_adapter",
    "module_name",
    "parse_layer",
]
