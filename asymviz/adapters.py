"""Read PEFT LoRA adapters into one data model.

`load_adapter(path)` accepts what users have: a PEFT `save_pretrained` folder (or one of its named-adapter
subfolders), a .zip of one, a bare .safetensors file (scaling unknown without a config: 1 is used and the
adapter says so), or a legacy .bin read with `torch.load(weights_only=True)`. It reads only the headers;
tensors are read one module at a time as the adapter is iterated, so a 7B adapter is analysed without
holding it in memory twice.

    adapter = load_adapter("runs/x/adapter")
    for m in adapter:                 # LoraModule, A: (r, d_in), B: (d_out, r)
        m.scaling * m.B @ m.A         # ΔW (d_out, d_in): dense, only for small modules and tests

Module names are PEFT keys without `base_model.model.` and the `.lora_A.weight` suffix, e.g.
`model.layers.0.self_attn.q_proj`. Shapes are checked against each other and against the config; nothing is
guessed from shapes. Embedding LoRA (`lora_embedding_A/B`), conv LoRA (kernels flattened into d_in), DoRA
magnitude vectors, rsLoRA, rank/alpha patterns and fan_in_fan_out are honoured; `modules_to_save` weights are
listed in `extras`, never treated as LoRA.
"""

from __future__ import annotations

import math
import re
import tempfile
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.adapter_config import AdapterConfig
from asymviz.errors import AdapterError

if TYPE_CHECKING:
    import pandas as pd
    import torch

PREFIX = "base_model.model."
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
CONFIG_FILE = "adapter_config.json"
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64", "float16", "bfloat16", "float32", "float64"}

_LORA_KEY = re.compile(
    r"^(?P<module>.+?)\.(?P<part>lora_embedding_A|lora_embedding_B|lora_A|lora_B|lora_magnitude_vector)"
    r"(?:\.(?P<rest>.+))?$"
)
_MODULES_TO_SAVE = re.compile(r"\.modules_to_save\.[^.]+\.")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,300}$")  # module names end up in tables, plots and HTML


@dataclass(frozen=True)
class LoraModule:
    """One adapted module, loaded. ΔW = scaling · B @ A."""

    name: str  # "model.layers.3.self_attn.q_proj"
    layer: int | None  # 3 (first number in the name), None for e.g. an embedding
    kind: str  # "q_proj" (last part of the name)
    A: torch.Tensor  # (r, d_in)
    B: torch.Tensor  # (d_out, r)
    scaling: float  # lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA; 1.0 when unknown
    magnitude: torch.Tensor | None = None  # (d_out,) DoRA column magnitudes, else None
    embedding: bool = False  # lora_embedding_A/B: d_in is the vocabulary, ΔW is used transposed
    fan_in_fan_out: bool = False  # base weight stored (d_in, d_out) (GPT-2 Conv1D): PEFT transposes ΔW

    @property
    def r(self) -> int:
        return self.A.shape[0]

    @property
    def d_in(self) -> int:
        return self.A.shape[1]

    @property
    def d_out(self) -> int:
        return self.B.shape[0]

    @property
    def finite(self) -> bool:
        return count_nonfinite(self.A) == 0 and count_nonfinite(self.B) == 0

    def delta_weight(self) -> torch.Tensor:
        """Dense ΔW (d_out, d_in). Memory d_out·d_in: for tests and small modules, never for analyses."""
        return self.scaling * (self.B @ self.A)


@dataclass(frozen=True)
class ModuleSpec:
    """What the header says about one adapted module; no tensor is read to make it."""

    name: str
    layer: int | None
    kind: str
    r: int
    d_in: int
    d_out: int
    alpha: float | None  # None when the adapter came without a config
    scaling: float
    a_key: str
    b_key: str
    magnitude_key: str | None
    embedding: bool
    fan_in_fan_out: bool
    dtype: str

    @property
    def params(self) -> int:
        return self.r * (self.d_in + self.d_out)


# ------------------------------------------------------------------------------------------------------------
# where the tensors come from


class _SafetensorsReader:
    """Reads tensors straight from the byte ranges of a header that check_safetensors validated: one
    read into a buffer the tensor then owns (measured 4x faster than safe_open per module here)."""

    _TORCH_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}

    def __init__(self, path: Path):
        from asymviz.safetensors_check import check_safetensors, data_start

        self.path = path
        self.header = check_safetensors(path)
        self.start = data_start(path)

    def keys(self):
        return self.header.keys()

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.header[key]["shape"])

    def dtype(self, key: str) -> str:
        return self.header[key]["dtype"]

    def get_many(self, keys: list[str]) -> list[torch.Tensor]:
        import sys

        import torch

        out = []
        try:
            with open(self.path, "rb", buffering=0) as f:
                for key in keys:
                    info = self.header[key]
                    begin, end = info["data_offsets"]
                    dtype = getattr(torch, self._TORCH_DTYPES[info["dtype"]])
                    buf = bytearray(end - begin)
                    f.seek(self.start + begin)
                    if f.readinto(buf) != len(buf):
                        raise AdapterError(f"{self.path.name}: {key} is cut short (the file changed while reading?)")
                    t = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
                    if sys.byteorder == "big":  # safetensors is little-endian
                        t = t.view(torch.uint8).view(-1, t.element_size()).flip(1).reshape(-1).view(dtype)
                    out.append(t.reshape(info["shape"]))
        except OSError as exc:
            raise AdapterError(f"{self.path.name}: cannot read tensors ({exc})") from None
        return out


class _DictReader:
    def __init__(self, tensors: Mapping[str, torch.Tensor], source: str):
        import torch

        for key, value in tensors.items():
            if not isinstance(key, str) or not isinstance(value, torch.Tensor):
                raise AdapterError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
        self.tensors = tensors

    def keys(self):
        return self.tensors.keys()

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.tensors[key].shape)

    def dtype(self, key: str) -> str:
        return str(self.tensors[key].dtype).removeprefix("torch.")

    def get_many(self, keys: list[str]) -> list[torch.Tensor]:
        return [self.tensors[k] for k in keys]


# ------------------------------------------------------------------------------------------------------------


class LoraAdapter:
    """A LoRA adapter: per-module metadata now, tensors on demand (iterate it, or call `module(name)`)."""

    def __init__(
        self,
        modules: tuple[ModuleSpec, ...],
        reader,
        config: AdapterConfig | None,
        source: str,
        extras: dict[str, tuple[int, ...]],
        problems: list[str],
    ):
        self.modules = modules
        self.config = config
        self.source = source
        self.extras = extras  # non-LoRA weights (modules_to_save, lora biases): key -> shape
        self.problems = problems  # non-fatal findings; grows as tensors are read (non-finite values)
        self._reader = reader
        self._by_name = {m.name: m for m in modules}
        self._tmp: tempfile.TemporaryDirectory | None = None

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, torch.Tensor],
        config: AdapterConfig | Mapping | None = None,
        source: str = "<state dict>",
        adapter_name: str | None = None,
    ) -> LoraAdapter:
        """Build from PEFT-format tensors in memory (e.g. `get_peft_model_state_dict(model)`)."""
        if isinstance(config, Mapping):
            config = AdapterConfig.from_dict(dict(config), source=source)
        return _build(_DictReader(state_dict, source), config, source, adapter_name)

    # -- access ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.modules)

    def __repr__(self) -> str:
        ranks = sorted({m.r for m in self.modules})
        return f"LoraAdapter({self.source!r}, {len(self)} modules, r={ranks}, scaling_known={self.scaling_known})"

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.modules]

    @property
    def scaling_known(self) -> bool:
        return self.config is not None

    @property
    def base_model(self) -> str | None:
        return self.config.base_model_name_or_path if self.config else None

    def spec(self, name: str) -> ModuleSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.source}: no adapted module named {name!r}") from None

    def module(self, name: str) -> LoraModule:
        return self._load(self.spec(name))

    def __iter__(self) -> Iterator[LoraModule]:
        for spec in self.modules:
            yield self._load(spec)

    def iter_modules(self, progress: Callable[[int], None] | None = None) -> Iterator[LoraModule]:
        """Iterate modules, calling progress(n_done) after each."""
        for i, spec in enumerate(self.modules, 1):
            yield self._load(spec)
            if progress:
                progress(i)

    def _load(self, spec: ModuleSpec) -> LoraModule:
        keys = [spec.a_key, spec.b_key] + ([spec.magnitude_key] if spec.magnitude_key else [])
        tensors = self._reader.get_many(keys)
        A, B = (_as_float(t) for t in tensors[:2])
        A = A.reshape(spec.r, spec.d_in)  # conv kernels flatten into d_in
        B = B.reshape(spec.d_out, spec.r)
        magnitude = _as_float(tensors[2]).reshape(-1) if spec.magnitude_key else None
        for label, t in (("A", A), ("B", B)):
            bad = count_nonfinite(t)
            if bad:
                note = f"{spec.name}: {bad} non-finite value(s) in {label}; analyses skip this module"
                if note not in self.problems:
                    self.problems.append(note)
        return LoraModule(
            name=spec.name,
            layer=spec.layer,
            kind=spec.kind,
            A=A,
            B=B,
            scaling=spec.scaling,
            magnitude=magnitude,
            embedding=spec.embedding,
            fan_in_fan_out=spec.fan_in_fan_out,
        )

    # -- summaries ---------------------------------------------------------------------------------------
    def summary(self) -> pd.DataFrame:
        """One row per module.

        Returns
        -------
        DataFrame with columns ``module, layer, kind, r, d_in, d_out, alpha, scaling, params, dtype,
        embedding, dora, fan_in_fan_out`` (params = r·(d_in + d_out), the trainable count of A&B).
        """
        import pandas as pd

        rows = [
            {
                "module": m.name, "layer": m.layer, "kind": m.kind, "r": m.r, "d_in": m.d_in,
                "d_out": m.d_out, "alpha": m.alpha, "scaling": m.scaling, "params": m.params,
                "dtype": m.dtype, "embedding": m.embedding, "dora": m.magnitude_key is not None,
                "fan_in_fan_out": m.fan_in_fan_out,
            }
            for m in self.modules
        ]  # fmt: skip
        frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
        frame["layer"] = frame["layer"].astype("Int64")
        return frame

    def trainable_params(self, mode: str = "ab") -> int:
        """LoRA parameters trained in `mode`: 'ab' r(d_in+d_out), 'b_only' r·d_out, 'a_only' r·d_in."""
        if mode == "ab":
            return sum(m.params for m in self.modules)
        if mode == "b_only":
            return sum(m.r * m.d_out for m in self.modules)
        if mode == "a_only":
            return sum(m.r * m.d_in for m in self.modules)
        raise ValueError(f"mode must be 'ab', 'b_only' or 'a_only', got {mode!r}")


SUMMARY_COLUMNS = [
    "module", "layer", "kind", "r", "d_in", "d_out", "alpha", "scaling", "params", "dtype", "embedding",
    "dora", "fan_in_fan_out",
]  # fmt: skip


def count_nonfinite(t: torch.Tensor) -> int:
    """Number of NaN/inf entries; a finite sum answers 0 in one pass (the exact count only runs otherwise)."""
    import torch

    if bool(torch.isfinite(t.sum())):
        return 0
    return int((~torch.isfinite(t)).sum())


def _as_float(t: torch.Tensor) -> torch.Tensor:
    import torch

    return t if t.dtype in (torch.float32, torch.float64) else t.to(torch.float32)


# ------------------------------------------------------------------------------------------------------------
# parsing keys into modules


def module_name(key: str) -> str:
    """PEFT key -> module name: drop `base_model.model.` and the LoRA suffix."""
    key = key.removeprefix(PREFIX)
    m = _LORA_KEY.match(key)
    return m.group("module") if m else key


def parse_layer(name: str) -> int | None:
    """The first integer component of a dotted module name (the block index), or None."""
    for part in name.split("."):
        if part.isdigit():
            return int(part)
    return None


def _build(reader, config: AdapterConfig | None, source: str, adapter_name: str | None) -> LoraAdapter:
    groups: dict[str, dict[str, str]] = {}
    extras: dict[str, tuple[int, ...]] = {}
    names_seen: set[str] = set()
    for key in reader.keys():
        short = key.removeprefix(PREFIX)
        m = _LORA_KEY.match(short)
        if not m:
            extras[_MODULES_TO_SAVE.sub(".", short)] = reader.shape(key)
            continue
        module, part, rest = m.group("module"), m.group("part"), m.group("rest")
        if not _SAFE_NAME.match(module):
            raise AdapterError(f"{source}: key {key[:80]!r} is not a module name (only letters, digits, _ . - allowed)")
        # rest is one of: None, "weight", "bias", "<adapter>", "<adapter>.weight", "<adapter>.bias"
        pieces = rest.split(".") if rest else []
        param = pieces.pop() if pieces and pieces[-1] in ("weight", "bias") else None
        if len(pieces) > 1:
            extras[short] = reader.shape(key)
            continue
        name_in_key = pieces[0] if pieces else None
        if name_in_key is not None:
            names_seen.add(name_in_key)
            if adapter_name is not None and name_in_key != adapter_name:
                continue
        if param == "bias":  # lora_bias=True: a bias on lora_B; not part of B·A
            extras[short] = reader.shape(key)
            continue
        slot = {"lora_A": "A", "lora_embedding_A": "A", "lora_B": "B", "lora_embedding_B": "B"}.get(part, "M")
        group = groups.setdefault(module, {})
        if slot in group:
            raise AdapterError(
                f"{source}: module {module!r} has several {part} tensors (keys for several adapters: "
                f"{', '.join(sorted(names_seen))}); choose one with adapter_name="
            )
        group[slot] = key
        if slot != "M":
            group["embedding" if part.startswith("lora_embedding") else "linear"] = "1"
    if adapter_name is not None and names_seen and adapter_name not in names_seen:
        raise AdapterError(f"{source}: no adapter named {adapter_name!r} (found: {', '.join(sorted(names_seen))})")
    if not groups:
        sample = ", ".join(list(reader.keys())[:3]) or "none"
        raise AdapterError(f"{source}: no LoRA weights found (no lora_A/lora_B keys; first keys: {sample})")

    problems: list[str] = []
    if config is None:
        problems.append(f"{source}: no adapter_config.json, so lora_alpha is unknown: scaling 1 is used for ΔW")
    specs = [_spec(name, keys, reader, config, source) for name, keys in groups.items()]
    specs.sort(key=_module_order)
    if config is not None and config.use_dora and not any(s.magnitude_key for s in specs):
        problems.append(f"{source}: the config says use_dora but the file has no lora_magnitude_vector")
    return LoraAdapter(tuple(specs), reader, config, source, extras, problems)


def _spec(name: str, keys: dict[str, str], reader, config: AdapterConfig | None, source: str) -> ModuleSpec:
    if "A" not in keys or "B" not in keys:
        have, missing = ("lora_A", "lora_B") if "A" in keys else ("lora_B", "lora_A")
        if "A" not in keys and "B" not in keys:
            raise AdapterError(f"{source}: module {name!r} has a magnitude vector but no lora_A/lora_B")
        raise AdapterError(f"{source}: module {name!r} has {have} but no {missing}")
    if "embedding" in keys and "linear" in keys:
        raise AdapterError(f"{source}: module {name!r} mixes lora_embedding and lora_A/B keys")
    a_shape, b_shape = reader.shape(keys["A"]), reader.shape(keys["B"])
    for key in (keys["A"], keys["B"]):
        if reader.dtype(key) not in FLOAT_DTYPES:
            raise AdapterError(f"{source}: {key} has dtype {reader.dtype(key)}, not a floating-point type")
    if len(a_shape) < 2 or len(b_shape) < 2:
        raise AdapterError(f"{source}: module {name!r}: lora_A {list(a_shape)} and lora_B {list(b_shape)} must be matrices")
    if len(b_shape) > 2 and any(d != 1 for d in b_shape[2:]):
        raise AdapterError(f"{source}: module {name!r}: lora_B {list(b_shape)} has a kernel larger than 1")
    r = a_shape[0]
    d_in = math.prod(a_shape[1:])  # conv: in_channels x kernel
    d_out = b_shape[0]
    if b_shape[1] != r:
        raise AdapterError(
            f"{source}: module {name!r}: mismatched ranks: lora_A {list(a_shape)} has rank {r} "
            f"but lora_B {list(b_shape)} has rank {b_shape[1]}"
        )
    if r == 0 or d_in == 0 or d_out == 0:
        raise AdapterError(f"{source}: module {name!r} has an empty factor (A {list(a_shape)}, B {list(b_shape)})")
    if config is not None:
        expected = config.rank_for(name)
        if r != expected:
            raise AdapterError(
                f"{source}: module {name!r}: the weights have rank {r} but the config gives r={expected}"
                + (" (rank_pattern)" if expected != config.r else "")
            )
        alpha, scaling = config.alpha_for(name), config.scaling_for(name, r)
        fan = config.fan_in_fan_out and "embedding" not in keys
    else:
        alpha, scaling, fan = None, 1.0, False
    mag = keys.get("M")
    if mag is not None:
        numel = math.prod(reader.shape(mag))
        if numel != d_out:
            raise AdapterError(
                f"{source}: module {name!r}: DoRA magnitude has {numel} entries but lora_B has d_out={d_out}"
            )
    return ModuleSpec(
        name=name,
        layer=parse_layer(name),
        kind=name.rsplit(".", 1)[-1],
        r=r,
        d_in=d_in,
        d_out=d_out,
        alpha=alpha,
        scaling=scaling,
        a_key=keys["A"],
        b_key=keys["B"],
        magnitude_key=mag,
        embedding="embedding" in keys,
        fan_in_fan_out=fan,
        dtype=reader.dtype(keys["A"]),
    )


# Within a block, modules in the order the forward pass meets them (for tables and heatmap axes).
_KIND_ORDER = {
    kind: i
    for i, kind in enumerate(
        "q_proj k_proj v_proj o_proj query key value c_attn qkv_proj out_proj dense c_proj gate_proj up_proj "
        "fc1 c_fc down_proj fc2 w1 w3 w2".split()
    )
}


def _module_order(spec: ModuleSpec):
    natural = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", spec.name)]
    return (spec.layer if spec.layer is not None else -1, _KIND_ORDER.get(spec.kind, len(_KIND_ORDER)), natural)


# ------------------------------------------------------------------------------------------------------------
# loading from disk


def load_adapter(path: str | Path, adapter_name: str | None = None, strict: bool = True) -> LoraAdapter:
    """Load a LoRA adapter from a PEFT folder, a .zip of one, a .safetensors file or a legacy .bin.

    Parameters
    ----------
    path : folder, .zip, .safetensors, .bin/.pt/.pth
    adapter_name : for folders with one subfolder per named adapter (PEFT's multi-adapter save), or keys
        that carry several adapter names; None picks the only one there is.
    strict : reject config fields that no PEFT LoraConfig has (False: ignore them).

    Raises
    ------
    AdapterError with one line naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise AdapterError(f"{path}: no such file or folder")
    if path.is_dir():
        return _load_dir(path, adapter_name, strict, source=str(path))
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return _load_zip(path, adapter_name, strict)
    config = _config_beside(path, strict)
    if suffix in (".bin", ".pt", ".pth"):
        return _build(_DictReader(_torch_load(path), path.name), config, str(path), adapter_name)
    return _build(_SafetensorsReader(path), config, str(path), adapter_name)


def _config_beside(path: Path, strict: bool) -> AdapterConfig | None:
    cfg = path.parent / CONFIG_FILE
    return AdapterConfig.from_file(cfg, strict=strict) if cfg.is_file() else None


def _load_dir(path: Path, adapter_name: str | None, strict: bool, source: str) -> LoraAdapter:
    if adapter_name is not None and (path / adapter_name).is_dir():
        return _load_dir(path / adapter_name, None, strict, source=f"{source}/{adapter_name}")
    weights = next((path / w for w in WEIGHT_FILES if (path / w).is_file()), None)
    if weights is None:
        subs = sorted(p.name for p in path.iterdir() if p.is_dir() and any((p / w).is_file() for w in WEIGHT_FILES))
        if len(subs) == 1:
            return _load_dir(path / subs[0], None, strict, source=f"{source}/{subs[0]}")
        if subs:
            raise AdapterError(f"{path}: holds several adapters ({', '.join(subs)}); pick one with adapter_name=")
        raise AdapterError(f"{path}: no adapter_model.safetensors or adapter_model.bin in this folder")
    config = _config_beside(weights, strict)
    reader = _SafetensorsReader(weights) if weights.suffix == ".safetensors" else _DictReader(_torch_load(weights), weights.name)
    return _build(reader, config, source, adapter_name)


def _load_zip(path: Path, adapter_name: str | None, strict: bool) -> LoraAdapter:
    from asymviz.archive import extract_zip, remove_tree

    tmp = Path(tempfile.mkdtemp(prefix="asymviz-zip-"))
    try:
        extract_zip(path, tmp)
        roots = sorted(
            {p.parent for w in WEIGHT_FILES for p in tmp.rglob(w)} | {p.parent for p in tmp.rglob("*.safetensors")},
            key=lambda p: (len(p.relative_to(tmp).parts), str(p)),
        )
        if not roots:
            raise AdapterError(f"{path.name}: the archive holds no adapter_model.safetensors or .bin")
        root = roots[0]
        if adapter_name is None and not any((root / w).is_file() for w in WEIGHT_FILES):
            files = sorted(root.glob("*.safetensors"))
            if len(files) != 1:
                raise AdapterError(f"{path.name}: several .safetensors files and no adapter_model file")
            adapter = _build(_SafetensorsReader(files[0]), _config_beside(files[0], strict), str(path), None)
        else:
            adapter = _load_dir(root, adapter_name, strict, source=str(path))
    except BaseException:
        remove_tree(tmp)
        raise
    weakref.finalize(adapter, remove_tree, tmp)  # the unpacked files live as long as the adapter
    return adapter


def _torch_load(path: Path) -> dict:
    import pickle

    import torch

    from asymviz.safetensors_check import sniff_format

    kind = sniff_format(path)
    if kind not in ("pickle", "torch-zip"):
        raise AdapterError(f"{path.name}: not a PyTorch checkpoint (expected a torch.save file)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=kind == "torch-zip")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdapterError(f"{path.name}: refused by torch.load(weights_only=True): {first}") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise AdapterError(f"{path.name}: holds a {type(data).__name__}, not a dict of tensors")
    return data
