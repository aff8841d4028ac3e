"""An orthocli checkpoint as a safetensors file: everything a .pt checkpoint holds, no pickle.

Layout (documented for users in docs/formats.md):

- Tensors. The model's weights under their own names, so `safetensors.torch.load_file` returns
  the state dict beside them. Every other tensor of the checkpoint (the drop record's filter
  indices and pre-drop values, a training state's optimizer buffers and RNG state) under
  NAMESPACE + its path in the checkpoint document, parts joined by "/", for example
  "orthocli/prune/layers/features.conv2/channels/0/old".
- Metadata (safetensors' string -> string header map), one entry: META_KEY -> a JSON document,
  the checkpoint without its state dict ("format": "orthocli", "format_version", "arch", "config",
  "data", "history", "prune", ...), each tensor replaced by {"$tensor": "<its name>"}.

JSON has no tuples, no non-string keys and no NaN; such values are tagged so that a document
reads back as it was written: {"$tuple": [...]}, {"$dict": [[key, value], ...]} (a dict with a key
that is not a string, or that starts with "$"), {"$float": "nan" | "inf" | "-inf"}. Every tag is
an object with one key starting with "$"; a plain dict never has such a key.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from orthocli.errors import CheckpointError, InputFileError

META_KEY = "orthocli"  # also the key of the JSON document `orthocli export` writes
NAMESPACE = "orthocli/"  # names of the tensors that are not the model's weights

if TYPE_CHECKING:  # torch only where a file is written: `decode` also serves `score`, which reads without torch
    import torch


def encode(payload: dict) -> bytes:
    """The safetensors bytes of an orthocli checkpoint (`checkpoint.make_payload`'s dict)."""
    import torch
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for key, t in payload.get("state_dict", {}).items():
        if key.startswith(NAMESPACE):
            raise CheckpointError(f"weight '{key}': names starting with '{NAMESPACE}' are reserved; write a .pt file")
        tensors[key] = t

    def tensor_ref(t: torch.Tensor, path: list[str]) -> dict:
        name = base = NAMESPACE + "/".join(path)
        n = 1
        while name in tensors:  # a key holding "/" can spell another value's path
            name, n = f"{base}#{n}", n + 1
        tensors[name] = t
        return {"$tensor": name}

    def enc(obj: Any, path: list[str]) -> Any:
        if isinstance(obj, torch.Tensor):
            return tensor_ref(obj, path)
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in obj):
                return {k: enc(v, [*path, k]) for k, v in obj.items()}
            return {"$dict": [[enc(k, path), enc(v, [*path, str(k)])] for k, v in obj.items()]}
        if isinstance(obj, tuple):
            return {"$tuple": [enc(v, [*path, str(i)]) for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [enc(v, [*path, str(i)]) for i, v in enumerate(obj)]
        if isinstance(obj, float) and not math.isfinite(obj):
            return {"$float": str(obj)}  # "nan", "inf", "-inf": float() reads them back
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        where = "/".join(path) or "<top level>"
        raise CheckpointError(
            f"'{where}' is of type {type(obj).__name__}, which a safetensors checkpoint cannot store; write a .pt file"
        )

    doc = enc({k: v for k, v in payload.items() if k != "state_dict"}, [])
    metadata = {META_KEY: json.dumps(doc, allow_nan=False, separators=(",", ":"))}
    return save(_storable(tensors), metadata=metadata)


def decode(tensors: dict, metadata: dict[str, str], path) -> tuple[dict, dict]:
    """(state dict, extras) of a safetensors file: the tensors the JSON document names go back
    into it; the others are the weights. A file without orthocli metadata has no extras. The
    tensors are torch's or numpy's (numpy_checkpoint.py), as read."""
    if META_KEY not in metadata:
        return tensors, {}
    used: set[str] = set()

    def dec(obj: Any) -> Any:
        if isinstance(obj, dict):
            if len(obj) == 1 and next(iter(obj)).startswith("$"):
                tag, value = next(iter(obj.items()))
                if tag == "$tensor":
                    used.add(value)
                    return tensors[value]
                if tag == "$tuple":
                    return tuple(dec(v) for v in value)
                if tag == "$dict":
                    return {dec(k): dec(v) for k, v in value}
                if tag == "$float":
                    return float(value)
                raise ValueError(f"unknown tag {tag}")
            return {k: dec(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [dec(v) for v in obj]
        return obj

    try:
        extras = dec(json.loads(metadata[META_KEY]))
        if not isinstance(extras, dict):
            raise ValueError("not a JSON object")
    except KeyError as e:
        raise InputFileError(
            f"{path}: its orthocli metadata names a tensor the file lacks ({e}); re-save or re-download it"
        ) from None
    except (ValueError, TypeError, AttributeError, RecursionError) as e:
        raise InputFileError(
            f"{path}: its orthocli metadata is damaged ({str(e)[:120]}); re-save or re-download it"
        ) from None
    return {k: t for k, t in tensors.items() if k not in used}, extras


def _storable(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each tensor on the CPU, contiguous, owning its memory: safetensors refuses tensors that
    share memory (tied weights) or views into a larger storage."""
    import torch

    out, seen = {}, set()
    for name, t in tensors.items():
        t = t.detach().cpu()
        storage = t.untyped_storage()
        whole = t.is_contiguous() and t.storage_offset() == 0 and storage.nbytes() == t.numel() * t.element_size()
        if not whole or (t.numel() and storage.data_ptr() in seen):
            t = t.clone(memory_format=torch.contiguous_format)
        if t.numel():
            seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out
