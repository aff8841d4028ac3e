"""Where training runs: the device, mixed precision, and the process group under torchrun.

`torchrun --nproc_per_node N -m orthocli train ...` starts N copies of orthocli with RANK,
WORLD_SIZE and LOCAL_RANK set; `setup()` reads them, joins the process group (NCCL on CUDA, gloo
on CPU) and gives each process its own GPU. Without torchrun it is one process, rank 0.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from orthocli.errors import UsageError

DEVICES = "auto, cpu, cuda, cuda:N or mps"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class Runtime:
    device: torch.device
    precision: str = "fp32"  # what autocast runs the forward pass in: fp32 (none), bf16, fp16
    rank: int = 0
    world_size: int = 1
    compile: bool = False  # run the forward pass through torch.compile (the default backend, inductor)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def compiled(self, model):
        """What the loop calls: `model`, or `torch.compile(model)` (its parameters, state dict keys
        and masks are the model's own; compile it after the method has installed its hooks)."""
        return torch.compile(model) if self.compile else model

    def grad_scaler(self):
        """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
        return torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    def describe(self) -> dict:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else self.device.type
        return {
            "device": str(self.device),
            "name": name,
            "precision": self.precision,
            "world_size": self.world_size,
            "compile": self.compile,
        }


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise UsageError("--device mps: no Apple GPU (MPS) is available here; use --device cpu or auto")
        return torch.device("mps")
    if spec == "cuda" or spec.startswith("cuda:"):
        index = local_rank if spec == "cuda" else spec.partition(":")[2]
        try:
            index = int(index)
        except ValueError:
            raise UsageError(f"--device {spec}: expected {DEVICES}") from None
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {spec}: CUDA is not available here (no GPU, or a CPU build of torch); use --device cpu or "
                "auto"
            )
        if not 0 <= index < torch.cuda.device_count():
            raise UsageError(
                f"--device {spec}: there are {torch.cuda.device_count()} CUDA devices "
                f"(0..{torch.cuda.device_count() - 1})"
            )
        return torch.device("cuda", index)
    raise UsageError(f"--device {spec}: expected {DEVICES}")


def resolve_precision(spec: str, device: torch.device) -> str:
    spec = (spec or "auto").lower()
    if spec not in PRECISIONS:
        raise UsageError(f"--precision {spec}: expected one of {', '.join(PRECISIONS)}")
    if spec == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if spec != "fp32" and device.type != "cuda":
        raise UsageError(
            f"--precision {spec} needs a CUDA device; on {device.type} training runs in fp32 (use --precision fp32 or "
            "auto)"
        )
    return spec


def setup(
    device: str = "auto", precision: str = "auto", *, deterministic: bool = False, compile: bool = False
) -> Runtime:
    """The runtime for this process; joins the torchrun process group when there is one."""
    if deterministic:  # cuBLAS is only deterministic with a fixed workspace, set before CUDA starts
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if world > 1:
        import torch.distributed as dist

        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Runtime(dev, resolve_precision(precision, dev), rank, world, compile)


def teardown(rt: Runtime) -> None:
    if rt.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def broadcast_tensors(rt: Runtime, tensors) -> None:
    """Overwrite every rank's tensors with rank 0's, in place (re-initialised filters, BN stats)."""
    if not rt.distributed:
        return
    import torch.distributed as dist

    for t in tensors:
        dist.broadcast(t.data, src=0)


def sum_gradients(rt: Runtime, params) -> None:
    """Sum the gradients over ranks, in one flat all-reduce (the losses are pre-weighted)."""
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def sum_over_ranks(rt: Runtime, value: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    value = value.clone()
    dist.all_reduce(value)
    return value
