"""Hostile and unusual adapter files (asymviz issue 11): three small PEFT adapters and seeded mutations of them.

    python tests/adapters/fuzz_corpus.py OUT_DIR [--n 500] [--seed 0] [--run] [--timeout 30] [--mem-gib 2] [--jobs 1]

writes OUT_DIR/bases/{llama,bert,dora} (saved by PEFT from tiny configs) and OUT_DIR/variants/NNNN-kind/ (one
folder per variant, so a write outside it can be seen); with --run it passes each variant through the real CLI
(`python -m asymviz spectra TARGET --format csv`) in a subprocess under a timeout and an RLIMIT_AS cap, and
prints counts of outcomes: ok / error-line / traceback / timeout / memory / other.

tests/adapters/test_fuzz.py uses the same generator (fewer variants, in-process) in the default suite.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import shutil
import struct
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

MARKER_ENV = "ASYMVIZ_FUZZ_MARKER"  # the malicious pickles write to this path if they ever run


@dataclass(frozen=True)
class Variant:
    kind: str  # "truncate", "header-dtype", "pickle-os-system", ...
    target: Path  # what is passed to `asymviz spectra`
    folder: Path  # the variant's own folder: nothing may be written outside it
    may_succeed: bool = True  # False: only a one-line error is a correct answer
    special: bool = False  # a FIFO or a device link: run it in a subprocess only


# ---- base adapters ---------------------------------------------------------------------------------------


def build_bases(root: Path) -> dict[str, Path]:
    """Three small PEFT adapters saved by PEFT itself: q,v on a tiny Llama, query,value on a tiny BERT
    (with an embedding LoRA and modules_to_save), and a DoRA one on the tiny Llama."""
    import torch
    from peft import LoraConfig, get_peft_model

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conftest import tiny_model

    specs = {
        "llama": ("llama", dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])),
        "bert": ("bert", dict(r=4, lora_alpha=8, target_modules=["query", "value", "word_embeddings"],
                              rank_pattern={"layer.1.attention.self.query": 2}, modules_to_save=["classifier"])),
        "dora": ("llama", dict(r=2, lora_alpha=4, target_modules=["q_proj", "down_proj"], use_dora=True)),
    }  # fmt: skip
    out = {}
    for name, (arch, kwargs) in specs.items():
        folder = Path(root) / name
        if not (folder / "adapter_model.safetensors").is_file():
            model = get_peft_model(tiny_model(arch), LoraConfig(init_lora_weights=False, **kwargs))
            torch.manual_seed(1)
            model.save_pretrained(folder)
        out[name] = folder
    return out


# ---- byte-level helpers ----------------------------------------------------------------------------------


def split_safetensors(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join_safetensors(header: dict | bytes, body: bytes, pad_to: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad_to is not None:
        raw = raw + b" " * (pad_to - len(raw))
    return struct.pack("<Q", len(raw)) + raw + body


def pad_header(header: dict, body: bytes, n: int) -> bytes:
    """A valid safetensors file whose header is exactly n bytes: whole LoRA modules (A and B, in file order)
    are kept while the compact header fits, the data is re-laid out to tile, and the header space-padded."""
    modules: dict[str, list[str]] = {}
    for key in sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"]):
        modules.setdefault(key.split(".lora_")[0], []).append(key)
    kept: dict = {}
    data = b""
    for keys in modules.values():
        trial, chunk = dict(kept), b""
        for key in keys:
            begin, end = header[key]["data_offsets"]
            offset = len(data) + len(chunk)
            trial[key] = {**header[key], "data_offsets": [offset, offset + end - begin]}
            chunk += body[begin:end]
        if len(json.dumps(trial, separators=(",", ":"))) > n:
            break
        kept, data = trial, data + chunk
    return join_safetensors(json.dumps(kept, separators=(",", ":")).encode(), data, pad_to=n)


def deep(n: int, leaf="1", open_="[", close="]") -> str:
    return open_ * n + leaf + close * n


class _System:
    """Unpickles as os.system(cmd)."""

    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Exec:
    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def _touch_marker_cmd() -> str:
    return f'touch "${MARKER_ENV}"'


def _touch_marker_code() -> str:
    return f"open(__import__('os').environ['{MARKER_ENV}'], 'w').write('x')"


# ---- the variants ----------------------------------------------------------------------------------------


class _Writer:
    def __init__(self, out: Path):
        self.out = Path(out)
        self.count = 0

    def folder(self, kind: str, base: Path | None = None) -> Path:
        self.count += 1
        folder = self.out / f"{self.count:04d}-{kind}"
        if folder.exists():
            shutil.rmtree(folder)
        if base is not None:
            shutil.copytree(base, folder)
        else:
            folder.mkdir(parents=True)
        return folder


def _tensors(base: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(base / "adapter_model.safetensors")


def _mutations(rng: random.Random, bases: dict[str, Path]) -> Iterator[tuple[str, Callable, bool, bool]]:
    """(kind, make(writer) -> (target, folder), may_succeed, special) in a fixed, seeded order."""
    import torch

    names = sorted(bases)

    def st(kind, fn, may=True):
        """fn(header, body, rng) -> bytes for adapter_model.safetensors."""
        base = bases[rng.choice(names)]
        seed = rng.randrange(2**32)

        def make(w):
            folder = w.folder(kind, base)
            header, body = split_safetensors((base / "adapter_model.safetensors").read_bytes())
            (folder / "adapter_model.safetensors").write_bytes(fn(header, body, random.Random(seed)))
            return folder, folder

        return kind, make, may, False

    def cfg(kind, text, may=True):
        base = bases[rng.choice(names)]

        def make(w):
            folder = w.folder(kind, base)
            (folder / "adapter_config.json").write_text(text if isinstance(text, str) else text(folder))
            return folder, folder

        return kind, make, may, False

    def cfg_update(kind, changes, may=True):
        base = bases[rng.choice(names)]

        def make(w):
            folder = w.folder(kind, base)
            data = json.loads((folder / "adapter_config.json").read_text())
            data.update(changes)
            (folder / "adapter_config.json").write_text(json.dumps(data))
            return folder, folder

        return kind, make, may, False

    def binfile(kind, payload: Callable[[Path], bytes | None], may=False, base_name=None):
        base = bases[base_name or rng.choice(names)]

        def make(w):
            folder = w.folder(kind, base)
            (folder / "adapter_model.safetensors").unlink()
            data = payload(folder)
            if data is not None:
                (folder / "adapter_model.bin").write_bytes(data)
            return folder, folder

        return kind, make, may, False

    def zipped(
        kind, fill: Callable[[zipfile.ZipFile, Path], None], may=False, compression=zipfile.ZIP_DEFLATED
    ):
        base = bases[rng.choice(names)]

        def make(w):
            folder = w.folder(kind)
            target = folder / "adapter.zip"
            with zipfile.ZipFile(target, "w", compression=compression) as zf:
                fill(zf, base)
            return target, folder

        return kind, make, may, False

    # -- header mutations
    def set_field(field, value):
        def fn(h, b, r):
            key = r.choice(sorted(k for k in h if k != "__metadata__"))
            h[key][field] = value
            return join_safetensors(h, b)

        return fn

    for value in ([1], {"a": 1}, 7, None, True, "F32 ", "f32", "I64", "U8"):
        yield st("header-dtype", set_field("dtype", value))
    for value in (
        [10**6, 10**6],
        [2**40, 2**40],
        [-1, 4],
        ["4", 4],
        [1.5, 4],
        [],
        [0],
        [2**64, 1],
        "4",
        [[4]],
    ):
        yield st("header-shape", set_field("shape", value))
    for value in ([0, 2**63], [-8, 8], [8, 0], [0], "0,8", [0.0, 8.0], [2**70, 2**70 + 8]):
        yield st("header-offsets", set_field("data_offsets", value))
    for depth in (100, 1000, 5000, 100_000):
        yield st("header-deep", lambda h, b, r, d=depth: join_safetensors(
            ('{"__metadata__": ' + deep(d) + "}").encode(), b), may=False)  # fmt: skip
        yield st("header-deep-dict", lambda h, b, r, d=depth: join_safetensors(
            deep(d, "1", '{"a":', "}").encode(), b), may=False)  # fmt: skip
    for digits in (400, 5000, 50_000):
        yield st("header-bignum", lambda h, b, r, d=digits: join_safetensors(
            json.dumps(h)[:-1].encode() + b', "x": ' + b"9" * d + b"}", b), may=False)  # fmt: skip
        yield st("header-bigfloat", lambda h, b, r, d=digits: join_safetensors(
            json.dumps(h)[:-1].encode() + b', "x": 1e' + b"9" * min(d, 30) + b"}", b), may=False)  # fmt: skip
    yield st("header-not-object", lambda h, b, r: join_safetensors(b"[1, 2, 3]", b), may=False)
    yield st("header-metadata-not-dict", lambda h, b, r: join_safetensors({**h, "__metadata__": [1]}, b))
    yield st(
        "header-nul", lambda h, b, r: join_safetensors(json.dumps(h).encode() + b"\x00" * 7, b), may=False
    )
    yield st("header-dup-keys", lambda h, b, r: join_safetensors(json.dumps(h)[:-1].encode() + b', "' + (
        sorted(h)[0]).encode() + b'": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b))  # fmt: skip
    yield st("header-len-zero", lambda h, b, r: struct.pack("<Q", 0) + b, may=False)
    yield st("header-len-huge", lambda h, b, r: struct.pack("<Q", 2**63) + b, may=False)
    yield st("tensor-gap-trailing", lambda h, b, r: join_safetensors(h, b + b"\x00" * 64))

    # header lengths whose first bytes look like a pickle's (0x80, 2..5): legal files that must load
    for length in (640, 896, 1152, 1408, 640 + 65536, 1152 + 2 * 65536):

        def padded(h, b, r, n=length):
            return pad_header(h, b, n)

        yield st(f"header-len-{length}", padded)

    # values: overflow float32 when read or when squared, float64 reinterpreted, NaN
    def fill_values(value, dtype="F32"):
        def fn(h, b, r):
            import numpy as np

            body = bytearray(b)
            key = r.choice(sorted(k for k in h if k != "__metadata__" and "lora_" in k))
            begin, end = h[key]["data_offsets"]
            np_dtype = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}[h[key]["dtype"]]
            count = (end - begin) // np.dtype(np_dtype).itemsize
            body[begin:end] = np.full(count, value, dtype=np_dtype).tobytes()
            return join_safetensors(h, bytes(body))

        return fn

    for value in (1e30, 3.4028235e38, 1e19, -1e20, float("inf"), float("nan"), 1e-45):
        yield st("values", fill_values(value))

    def as_f64(h, b, r):  # float32 bytes read as float64: half the elements, absurd values
        key = r.choice(sorted(k for k in h if k != "__metadata__" and "lora_A" in k))
        shape = h[key]["shape"]
        if shape[-1] % 2 == 0:
            h[key] = {**h[key], "dtype": "F64", "shape": [*shape[:-1], shape[-1] // 2]}
        return join_safetensors(h, b)

    for _ in range(4):
        yield st("values-f64-reinterpreted", as_f64)

    # -- config mutations
    yield cfg("config-not-json", "{not json", may=False)
    yield cfg("config-empty", "", may=False)
    yield cfg("config-list", "[1, 2]", may=False)
    yield cfg("config-deep", '{"r": 4, "x": ' + deep(100_000) + "}", may=False)
    yield cfg("config-deep-obj", deep(50_000, "1", '{"a":', "}"), may=False)
    yield cfg("config-bignum", '{"peft_type": "LORA", "r": ' + "9" * 5000 + "}", may=False)
    yield cfg(
        "config-bignum-alpha", '{"peft_type": "LORA", "r": 4, "lora_alpha": ' + "9" * 400 + "}", may=False
    )
    yield cfg("config-huge-exp", '{"peft_type": "LORA", "r": 4, "lora_alpha": 1e999}', may=False)
    yield cfg("config-nan", '{"peft_type": "LORA", "r": 4, "lora_alpha": NaN}', may=False)
    yield cfg("config-utf16", lambda f: "", may=False)
    for field, value in [
        ("rank_pattern", [1, 2]), ("rank_pattern", "q_proj"), ("rank_pattern", 5), ("rank_pattern", {"q": "4"}),
        ("rank_pattern", {"q_proj": 10**30}), ("rank_pattern", {"q": [4]}), ("alpha_pattern", [["q", 1]]),
        ("alpha_pattern", {"v_proj": 10**400}), ("alpha_pattern", {"v": {"x": 1}}), ("alpha_pattern", "v"),
        ("r", 10**30), ("r", 2**31), ("r", 4.0), ("r", "4"), ("lora_alpha", 1e308), ("lora_alpha", -1e308),
        ("lora_alpha", [8]), ("target_modules", {"a": 1}), ("modules_to_save", "classifier"),
        ("modules_to_save", [[1]]), ("use_rslora", 1), ("peft_type", ["LORA"]), ("peft_type", None),
        ("base_model_name_or_path", {"x": 1}), ("task_type", 5), ("fan_in_fan_out", "false"),
    ]:  # fmt: skip
        yield cfg_update(f"config-{field}", {field: value})
    for pattern in ("(a+)+$", "(.*a){30}", "(x+x+)+y", "(.*)*z", "(a|aa)+$", "(\\w+\\.)+q_proj_", ".*.*.*.*.*.*.*.*x",
                    "a" * 5000, "(" * 200 + ")" * 200, "[", "q_proj", ".*q_proj", "layers\\.\\d+\\.self_attn\\.q_proj",
                    "(?P<a>x)(?P=a)", "x{1000000}", "(?=.*){1,1000}q"):  # fmt: skip
        yield cfg_update("config-regex", {"rank_pattern": {pattern: 4}, "alpha_pattern": {pattern: 8}})

    # -- pickles where a tensor file was promised
    def legacy(obj):
        return lambda folder: _torch_bytes(obj, zip_format=False)

    def zipfmt(obj):
        return lambda folder: _torch_bytes(obj, zip_format=True)

    yield binfile("pickle-os-system", lambda f: pickle.dumps({"x": _System(_touch_marker_cmd())}))
    yield binfile("pickle-exec", lambda f: pickle.dumps({"x": _Exec(_touch_marker_code())}, protocol=2))
    yield binfile("pickle-os-system-zip", zipfmt({"x": _System(_touch_marker_cmd())}))
    yield binfile("pickle-exec-legacy", legacy({"x": _Exec(_touch_marker_code())}))
    yield binfile("pickle-not-dict", legacy([torch.zeros(2)]))
    yield binfile("pickle-empty", lambda f: b"")
    yield binfile("pickle-int", lambda f: pickle.dumps(5))
    yield binfile("pickle-str-keys-not-tensors", zipfmt({"a": 1}))
    yield binfile("pickle-nested-deep", lambda f: b"\x80\x02" + b"]" * 100_000 + b".")

    def expanded(folder):  # a 1e12-element view of a 4-element storage
        t = torch.zeros(4).as_strided((10**6, 10**6), (0, 0))
        return _torch_bytes(
            {
                "base_model.model.x.lora_A.weight": t,
                "base_model.model.x.lora_B.weight": torch.zeros(8, 10**6)[:, :4],
            },
            True,
        )

    yield binfile("pickle-expanded-view", expanded)

    for base_name in names:

        def state(folder, b=base_name):
            return _tensors(bases[b])

        # legal files that fail today
        yield binfile(
            "torch-zip-compressed", lambda f, b=base_name: _compressed_torch_zip(state(f, b)), True, base_name
        )
        yield binfile(
            "torch-zip-big-endian", lambda f, b=base_name: _big_endian_torch_zip(state(f, b)), True, base_name
        )
        yield binfile("torch-parameters", lambda f, b=base_name: _torch_bytes(
            {k: torch.nn.Parameter(v) for k, v in state(f, b).items()}, True), True, base_name)  # fmt: skip
        yield binfile(
            "torch-legacy", lambda f, b=base_name: _torch_bytes(state(f, b), False), True, base_name
        )

    # -- zips
    def add_folder(zf, base, prefix="adapter/"):
        for f in sorted(base.iterdir()):
            zf.write(f, prefix + f.name)

    yield zipped("zip-ok", add_folder, may=True)
    yield zipped("zip-stored", add_folder, may=True, compression=zipfile.ZIP_STORED)
    yield zipped("zip-two-adapters", lambda zf, b: (add_folder(zf, b, "one/"), add_folder(zf, b, "two/")))
    yield zipped(
        "zip-bomb", lambda zf, b: (add_folder(zf, b), zf.writestr("adapter/junk.bin", b"\0" * 16 * 2**20))
    )
    yield zipped(
        "zip-bomb-weights", lambda zf, b: zf.writestr("adapter_model.safetensors", b"\0" * 24 * 2**20)
    )
    yield zipped("zip-many-members", lambda zf, b: [zf.writestr(f"m/{i}.txt", b"x") for i in range(10_001)])
    yield zipped("zip-many-small", lambda zf, b: (add_folder(zf, b), [zf.writestr(f"j/{i}", b"\0" * 4096) for i in range(3000)]), may=True)  # fmt: skip
    yield zipped("zip-traversal", lambda zf, b: (add_folder(zf, b), zf.writestr("../x", b"x")))
    yield zipped(
        "zip-traversal-abs", lambda zf, b: (add_folder(zf, b), zf.writestr("/tmp/asymviz-fuzz-abs", b"x"))
    )
    yield zipped(
        "zip-long-name", lambda zf, b: (add_folder(zf, b), zf.writestr("a" * 4000 + "/../../x", b"x"))
    )
    yield zipped("zip-newline-name", lambda zf, b: zf.writestr("bad\nname\r.safetensors", b"\x80\x02garbage"))
    yield zipped("zip-empty", lambda zf, b: None)
    yield zipped("zip-nested-zip", lambda zf, b: zf.writestr("inner.zip", _zip_of(b)))
    yield zipped("zip-corrupt-member", lambda zf, b: add_folder(zf, b), may=True)  # corrupted after writing

    # -- special files read as adapters
    def special(kind, fn):
        def make(w):
            folder = w.folder(kind)
            return fn(folder), folder

        return kind, make, False, True

    def fifo(folder, name="adapter_model.safetensors"):
        os.mkfifo(folder / name)
        return folder / name

    def fifo_config(folder):
        shutil.copy(bases["llama"] / "adapter_model.safetensors", folder)
        os.mkfifo(folder / "adapter_config.json")
        return folder

    def link(dest, name="adapter_model.safetensors"):
        def fn(folder):
            os.symlink(dest, folder / name)
            return folder

        return fn

    def fifo_in_folder(folder):
        os.mkfifo(folder / "adapter_model.safetensors")
        return folder

    yield special("fifo-file", fifo)
    yield special("fifo-in-folder", fifo_in_folder)
    yield special("fifo-config", fifo_config)
    yield special("fifo-bin", lambda f: (os.mkfifo(f / "adapter_model.bin"), f)[1])
    yield special("link-dev-zero", link("/dev/zero"))
    yield special("link-dev-zero-bin", link("/dev/zero", "adapter_model.bin"))
    yield special("link-dev-urandom-file", lambda f: (os.symlink("/dev/urandom", f / "x.safetensors"), f / "x.safetensors")[1])  # fmt: skip
    yield special("link-proc", link("/proc/self/mem"))
    yield special("link-proc-config", lambda f: (shutil.copy(bases["llama"] / "adapter_model.safetensors", f),
                                                 os.symlink("/proc/self/status", f / "adapter_config.json"), f)[2])  # fmt: skip
    yield special("dev-zero-zip", lambda f: (os.symlink("/dev/zero", f / "a.zip"), f / "a.zip")[1])
    yield special("newline-name", lambda f: (shutil.copy(bases["llama"] / "adapter_model.safetensors", f / "x\ny.safetensors"),
                                             (f / "x\ny.safetensors").write_bytes(b"\x80\x02junk"), f / "x\ny.safetensors")[2])  # fmt: skip

    # -- then random truncations and byte flips, without end (write_corpus stops at n)
    while True:
        for _ in range(3):
            yield st(
                "truncate",
                lambda h, b, r: join_safetensors(h, b)[: r.randrange(0, 8 + len(json.dumps(h)) + len(b))],
            )
        for _ in range(3):

            def flip(h, b, r):
                data = bytearray(join_safetensors(h, b))
                for _ in range(r.randint(1, 4)):
                    data[r.randrange(0, min(len(data), 8 + len(json.dumps(h))))] = r.randrange(256)
                return bytes(data)

            yield st("header-byteflip", flip)
        for _ in range(1):

            def flip_body(h, b, r):
                data = bytearray(b)
                for _ in range(r.randint(1, 16)):
                    data[r.randrange(len(data))] = r.randrange(256)
                return join_safetensors(h, bytes(data))

            yield st("body-byteflip", flip_body)

        for base_name in names:
            seed_t, seed_f = rng.randrange(2**32), rng.randrange(2**32)
            for _ in range(1):

                def truncated(folder, b=base_name, seed=seed_t):
                    data = _torch_bytes(state(folder, b), zip_format=random.Random(seed).random() < 0.5)
                    return data[: random.Random(seed).randrange(len(data))]

                yield binfile("pickle-truncated", truncated, base_name=base_name)

                def flipped(folder, b=base_name, seed=seed_f):
                    r = random.Random(seed)
                    data = bytearray(_torch_bytes(state(folder, b), zip_format=r.random() < 0.5))
                    for _ in range(r.randint(1, 6)):
                        data[r.randrange(len(data))] = r.randrange(256)
                    return bytes(data)

                yield binfile("pickle-byteflip", flipped, True, base_name)  # a flip in the data is legal


def _torch_bytes(obj, zip_format: bool) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=zip_format)
    return buf.getvalue()


def _compressed_torch_zip(state: dict) -> bytes:
    """torch.save's zip, re-written with every record deflated (a zip tool's 'compress' on a checkpoint)."""
    src = zipfile.ZipFile(io.BytesIO(_torch_bytes(state, True)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for info in src.infolist():
            zf.writestr(info.filename, src.read(info))
    return out.getvalue()


def _big_endian_torch_zip(state: dict) -> bytes:
    """A torch zip checkpoint as a big-endian machine writes it: `byteorder` record "big", data byte-swapped."""
    import numpy as np

    src = zipfile.ZipFile(io.BytesIO(_torch_bytes(state, True)))  # adapter tensors here are all float32
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename:
                data = np.frombuffer(data, dtype="<f4").astype(">f4").tobytes()
            zf.writestr(info, data)
    return out.getvalue()


def _zip_of(base: Path) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for f in sorted(base.iterdir()):
            zf.write(f, f.name)
    return out.getvalue()


def write_corpus(bases: dict[str, Path], out: Path, n: int = 500, seed: int = 0) -> list[Variant]:
    """Write up to n variants (the fixed list first, then random truncations and flips to fill up to n)."""
    rng = random.Random(seed)
    w = _Writer(out)
    variants = []
    for kind, make, may, special in _mutations(rng, bases):
        if len(variants) >= n:
            break
        target, folder = make(w)
        variants.append(Variant(kind, target, folder, may, special))
    for v in variants:
        if v.kind == "zip-corrupt-member":
            data = bytearray(v.target.read_bytes())
            data[len(data) // 3] ^= 0xFF
            v.target.write_bytes(bytes(data))
    manifest = [{"kind": v.kind, "target": str(v.target), "folder": str(v.folder), "may_succeed": v.may_succeed,
                 "special": v.special} for v in variants]  # fmt: skip
    (Path(out) / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return variants


def read_corpus(out: Path) -> list[Variant]:
    """The variants a previous write_corpus left in `out` (from its manifest.json)."""
    rows = json.loads((Path(out) / "manifest.json").read_text())
    return [
        Variant(r["kind"], Path(r["target"]), Path(r["folder"]), r["may_succeed"], r["special"]) for r in rows
    ]


# ---- running the real CLI --------------------------------------------------------------------------------


def classify(rc: int | None, out: str, err: str) -> str:
    """ok (exit 0 and a CSV), error-line (exit 2, exactly one stderr line, `error:`), traceback, timeout,
    memory, other."""
    if rc is None:
        return "timeout"
    if "Traceback" in err:
        return "memory" if "MemoryError" in err else "traceback"
    lines = [line for line in err.splitlines() if line.strip()]
    if rc == 2 and len(lines) == 1 and lines[0].startswith("error:") and out == "":
        return "error-line"
    if rc == 0 and out.startswith("module,") and not [x for x in lines if not x.startswith("warning:")]:
        return "ok"
    if rc in (-9, 137) or "MemoryError" in err or "std::bad_alloc" in err:
        return "memory"
    return "other"


def run_cli(target: Path, timeout: float = 30.0, mem_gib: float = 2.0, env: dict | None = None):
    """`python -m asymviz spectra TARGET --format csv` in a subprocess: (outcome, rc, stdout, stderr, seconds)."""
    import resource
    import subprocess
    import time

    def limit():
        cap = int(mem_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            [sys.executable, "-m", "asymviz", "spectra", str(target), "--format", "csv"],
            capture_output=True, timeout=timeout, preexec_fn=limit, env=env, cwd=Path(target).parent,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "timeout", None, "", "", time.perf_counter() - t0
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    return classify(p.returncode, out, err), p.returncode, out, err, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    import argparse
    import collections
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", action="store_true")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--mem-gib", type=float, default=2.0)
    ap.add_argument("--jobs", type=int, default=1, help="variants run at once (each in its own subprocess)")
    ap.add_argument("--reuse", action="store_true", help="run the variants already written in OUT")
    args = ap.parse_args(argv)
    if args.reuse:
        variants = read_corpus(args.out / "variants")
    else:
        bases = build_bases(args.out / "bases")
        variants = write_corpus(bases, args.out / "variants", args.n, args.seed)
        print(f"wrote {len(variants)} variants to {args.out / 'variants'}")
    if not args.run:
        return 0
    marker = Path(tempfile.mkdtemp()) / "pwned"
    env = {**os.environ, MARKER_ENV: str(marker), "ASYMVIZ_NO_PROGRESS": "1"}
    counts: collections.Counter = collections.Counter()
    bad = []
    before = _listing(args.out)
    tmp_before = set(os.listdir(tempfile.gettempdir()))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(args.jobs) as pool:  # each variant is its own subprocess; threads only wait
        results = pool.map(lambda v: run_cli(v.target, args.timeout, args.mem_gib, env), variants)
        for v, (outcome, rc, out, err, secs) in zip(variants, results):
            if outcome == "ok" and not v.may_succeed:
                outcome = "ok-but-should-fail"
            counts[outcome] += 1
            if outcome not in ("ok", "error-line"):
                bad.append((v, outcome, rc, err.strip().splitlines()[-1:] if err.strip() else out[:200]))
            first = (err.strip().splitlines() or [""])[0][:150]
            print(f"{v.folder.name:40s} {outcome:12s} {secs:6.2f}s  {first}", flush=True)
    folders = tuple(str(v.folder) for v in variants)
    outside = sorted(p for p in _listing(args.out) - before if not p.startswith(folders))
    leftover = sorted(set(os.listdir(tempfile.gettempdir())) - tmp_before)
    print("files written outside the variants' folders:", outside[:10] or "none")
    print("new entries left in the temp folder:", leftover[:10] or "none")
    print("\noutcomes:", dict(sorted(counts.items())))
    print("marker file (code execution):", "PRESENT" if marker.exists() else "absent")
    for v, outcome, rc, last in bad:
        print(f"  {outcome}: {v.folder.name} rc={rc} {last}")
    return 0


def _listing(root: Path) -> set[str]:
    return {str(p) for p in Path(root).rglob("*")}


if __name__ == "__main__":
    raise SystemExit(main())
