"""Adapters named by a Hugging Face Hub repo id: `org/name` or `org/name@revision`.

    folder = resolve("tloen/alpaca-lora-7b")      # a local snapshot folder, then load_adapter(folder)

Only the adapter files at the top of the repo are fetched (adapter_config.json, adapter_model.safetensors /
.bin / .pt, mlx-lm's adapters.safetensors, any top-level *.safetensors: `allow_patterns`, and `*/*` ignored),
through huggingface_hub.snapshot_download into the usual cache (HF_HUB_CACHE / HF_HOME). With
HF_HUB_OFFLINE=1 only the cache is used. Failures are one AdapterError: offline and not cached, no such
repo or revision, no network.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from asymviz.errors import AdapterError

ALLOW = [
    "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "adapter_model.pt",
    "adapters.safetensors", "*.safetensors",
]  # fmt: skip
_REPO_ID = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}(@[A-Za-z0-9_.\-/]{1,200})?$"
)


def looks_like_repo_id(text: str) -> bool:
    """`org/name` or `org/name@rev` (Hub naming rules: letters, digits, - _ .), not a path that exists."""
    return bool(_REPO_ID.match(text)) and ".." not in text and not Path(text).exists()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def resolve(spec: str) -> Path:
    """The local folder holding the adapter files of `org/name[@revision]` (downloaded when online).

    Raises
    ------
    AdapterError : offline and not in the cache; repository or revision not found; download failed.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id, _, revision = spec.partition("@")
    try:
        folder = snapshot_download(
            repo_id=repo_id,
            revision=revision or None,
            allow_patterns=ALLOW,
            ignore_patterns=["*/*"],
            cache_dir=os.environ.get("HF_HUB_CACHE") or None,  # read now, not at huggingface_hub's import
            local_files_only=_offline(),
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        if _offline():
            raise AdapterError(
                f"{spec}: not a local path, and HF_HUB_OFFLINE is set and the Hub cache has no copy of it"
            ) from None
        raise AdapterError(
            f"{spec}: not a local path, and the Hugging Face Hub could not be reached"
        ) from None
    except GatedRepoError:
        raise AdapterError(
            f"{spec}: a gated Hub repository; log in with `hf auth login` after accepting its terms"
        ) from None
    except RevisionNotFoundError:
        raise AdapterError(f"{spec}: the Hub repository has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise AdapterError(
            f"{spec}: not a local path, and no Hub repository of that name (or it is private)"
        ) from None
    except OSError as exc:  # network errors
        raise AdapterError(
            f"{spec}: download from the Hugging Face Hub failed ({exc.__class__.__name__})"
        ) from None
    folder = Path(folder)
    if not any(folder.iterdir()):
        raise AdapterError(f"{spec}: the Hub repository has no adapter files at its top level")
    return folder
