"""One `orthocli train` invocation: resolved options, data, model, the method run and (with
--baseline) the control, and every file they write. Training itself is `orthocli.training`; what
the user sees is the CLI's (a `reporter` gets progress and messages).

Files a run writes, next to -o OUT.pt: OUT.pt (the trained model), OUT.baseline.pt (--baseline),
OUT.cycle<k>.pt (--save-cycles, after each re-introduction), and while it runs OUT.pt.state (and
OUT.baseline.pt.state): the training state at the end of an epoch (saved at most every
--state-every seconds, and after the last epoch), which --resume reads and which is removed once
every output is written.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from orthocli.errors import OutputError, UsageError

# Default seconds between two saves of the training state (at the end of an epoch; the last epoch
# always): saving after every epoch of a small model would cost more than the epoch itself.
STATE_EVERY = 5.0

# Options that describe how the model is built (not fields of TrainConfig).
ARCH_OPTIONS = ("width", "depth", "kernel", "pool", "batchnorm", "activation")


def sibling(output: Path, tag: str) -> Path:
    return output.with_name(f"{output.stem}.{tag}{output.suffix or '.pt'}")


def state_path(output: Path) -> Path:
    return output.with_name(output.name + ".state")


class TrainRun:
    """Resolved options, data, outputs; trains the method run and the baseline, writes the files."""

    def __init__(self, opts: dict, cfg, meta: dict, resume: bool, reporter) -> None:
        self.opts, self.cfg, self.meta, self.resume = opts, cfg, meta, resume
        # reporter: start(role, cfg), update(role, event), cycle(role, entry), log(text), and a
        # `quiet` flag (set on ranks other than 0); a context manager around the training.
        self.reporter = reporter
        self.output = Path(meta["output"])
        self.results: dict[str, Any] = {}
        self.metrics_file = None
        self.saved_history: dict[str, list] = {}  # per role, the epochs a resumed run already did

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def fresh(cls, o: dict, reporter) -> TrainRun:
        from orthocli.training import TrainConfig

        fields = set(TrainConfig.__dataclass_fields__)
        cfg = TrainConfig(
            **{k: v for k, v in o.items() if k in fields and k not in ("layers", "exclude")},
            layers=o["layers"] or [],
            exclude=o["exclude"] or [],
        )
        if o["plot"] is not None:
            need_matplotlib()
        if o["output"] is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UsageError(
                "under torchrun give -o/--output: every process must write to (rank 0) or read from the same path"
            )
        output = o["output"] or default_output(o["arch"] or "convnet")
        meta = {
            "output": str(output),
            "checkpoint": str(o["checkpoint"]) if o["checkpoint"] else None,
            "key": o["key"],
            "trust": o["trust"],
            "arch_name": o["arch"],
            "arch_options": {k: o[k] for k in ARCH_OPTIONS},
            "data": str(o["data"]) if o["data"] else None,
            "test_data": str(o["test_data"]) if o["test_data"] else None,
            "max_samples": o["max_samples"],
            "threads": o["threads"],
            "baseline": o["baseline"],
            "save_cycles": o["save_cycles"],
            "metrics": str(o["metrics"]) if o["metrics"] else None,
            "plot": str(o["plot"]) if o["plot"] else None,
            "device": o["device"],
            "precision": o["precision"],
        }
        run = cls(o, cfg, meta, resume=False, reporter=reporter)
        state = state_path(output)
        if state.exists() and not o["force"]:
            raise OutputError(
                f"{state}: an interrupted run's state is here; continue it with --resume, or start over with --force"
            )
        run.check_outputs(force=o["force"])
        return run

    @classmethod
    def resumed(cls, o: dict, reporter) -> TrainRun:
        from orthocli.training import TrainConfig, read_state

        if o["output"] is None:
            raise UsageError("--resume needs -o/--output: the output path of the interrupted run")
        saved = read_state(state_path(o["output"]))
        meta = {**saved["meta"], "device": o["device"], "precision": o["precision"]}  # a run may move
        if meta.get("role") == "baseline":
            raise UsageError("give -o the method run's output, not the baseline's")
        reporter.log(f"Resuming {o['output']} with its saved options (options given now are ignored, except --json)")
        cfg = TrainConfig(**{**saved["config"], "baseline": False})
        run = cls(o, cfg, meta, resume=True, reporter=reporter)
        run.saved_history["repr"] = saved["train"]["history"]
        baseline_state = state_path(sibling(Path(o["output"]), "baseline"))
        if meta["baseline"] and baseline_state.exists():
            run.saved_history["baseline"] = read_state(baseline_state)["train"]["history"]
        if meta["plot"]:
            need_matplotlib()
        run.check_outputs(force=True)
        return run

    def paths(self) -> list[Path]:
        m, out = self.meta, self.output
        paths = [out]
        if m["baseline"]:
            paths.append(sibling(out, "baseline"))
        if m["save_cycles"]:
            paths += [sibling(out, f"cycle{c}") for c in range(1, self.cfg.cycles + 1)]
        paths += [Path(p) for p in (m["metrics"], m["plot"]) if p]
        return paths

    def check_outputs(self, force: bool) -> None:
        from orthocli.atomic import check_output

        inputs = [p for p in (self.meta["checkpoint"], self.meta["data"], self.meta["test_data"]) if p]
        paths = self.paths()
        if len(set(map(os.path.abspath, paths))) < len(paths):
            raise UsageError("two outputs share one path; give --metrics, --plot and -o different files")
        for p in paths:
            check_output(p, force=force, inputs=inputs)

    def prepared_data(self):
        from orthocli.data import prepare

        m = self.meta
        return prepare(
            m["data"],
            test_path=m["test_data"],
            val_fraction=self.cfg.val_fraction,
            seed=self.cfg.seed,
            max_samples=m["max_samples"],
        )

    def model(self, data):
        """A fresh model (seeded) or the starting checkpoint's; its arch dict (None for a pickled
        module) and drop record (None unless the checkpoint is pruned)."""
        from orthocli.models import arch_spec, build_model, init_weights
        from orthocli.training import set_seed

        m = self.meta
        set_seed(self.cfg.seed)
        if m["checkpoint"] is None:
            opts = {k: v for k, v in m["arch_options"].items() if v is not None}
            arch = arch_spec(
                m["arch_name"] or "convnet",
                in_channels=data.in_channels,
                num_classes=data.num_classes,
                input_shape=list(data.spatial_shape),
                **opts,
            )
            model = build_model(arch)
            if arch["name"] != "callable":
                init_weights(model, opts.get("activation", "relu"))
            return model, arch, None
        return model_from_checkpoint(m, data)

    # -- training ------------------------------------------------------------------------------
    def train_all(self) -> None:
        from orthocli.runtime import setup

        if self.meta.get("threads"):
            import torch

            torch.set_num_threads(self.meta["threads"])
        self.rt = setup(
            self.meta.get("device", "auto"), self.meta.get("precision", "auto"), deterministic=self.cfg.deterministic
        )
        data = self.prepared_data()
        self.data = data
        hw = self.rt.describe()
        self.banner = [
            f"Training on {hw['name']} ({hw['device']}, {hw['precision']})"
            + (f", {hw['world_size']} processes" if self.rt.distributed else "")
        ]
        self.banner.append(
            f"Data: {data.source}: {len(data.train)} train, {len(data.val)} val"
            + (f", {len(data.test)} test" if data.test is not None else "")
            + f"; writing {self.output}"
        )
        self.reporter.quiet = not self.rt.is_main
        with self.reporter:
            self.train_one("repr", data)
            if self.meta["baseline"]:
                self.train_one("baseline", data)

    def train_one(self, role: str, data) -> None:
        import dataclasses

        from orthocli.training import train

        output = self.output if role == "repr" else sibling(self.output, "baseline")
        cfg = dataclasses.replace(self.cfg, baseline=role == "baseline")
        model, arch, record = self.model(data)
        if self.rt.is_main and self.banner:  # once the model is built: bad input fails silently before
            for line in self.banner:
                self.reporter.log(line)
            self.banner = []
        if record is not None and self.meta["baseline"]:
            raise UsageError(
                "--baseline compares whole schedules; it does not apply to a pruned checkpoint's sub-network"
            )
        state = state_path(output)
        resume = self.resume and state.exists()
        if self.resume and role == "repr" and not resume:
            raise UsageError(f"{state}: no saved training state to resume")
        self.reporter.start(role, cfg)
        result = train(
            model,
            data,
            cfg,
            record=record,
            callback=lambda e: self.on_event(role, e, arch),
            state_path=state,
            resume=resume,
            state_every=self.opts["state_every"],
            meta={**self.meta, "role": role},
            runtime=self.rt,
        )
        if self.rt.is_main:
            self.write_model(output, result, arch, cfg, role)
        self.results[role] = (result, output)

    def on_event(self, role: str, event: dict, arch) -> None:
        if event["kind"] == "epoch":
            self.reporter.update(role, event)
            if self.meta["metrics"]:
                self.log_metrics(role, event)
        elif event["kind"] == "cycle":
            self.reporter.cycle(role, event)
            if role == "repr" and self.meta["save_cycles"]:
                from orthocli import checkpoint as ckpt_io

                path = sibling(self.output, f"cycle{event['cycle']}")
                sd = {k: v.detach().clone() for k, v in event["state_dict"].items()}
                ckpt_io.save(
                    path,
                    ckpt_io.make_payload(
                        sd, arch=arch, config=self.resolved(), data=self.data_extras(), cycle=event["cycle"]
                    ),
                    force=True,
                )

    def log_metrics(self, role: str, event: dict) -> None:
        if self.metrics_file is None:  # opened at the first epoch: bad input writes nothing
            self.metrics_file = open(self.meta["metrics"], "w")
            for r, history in self.saved_history.items():  # a resumed run: what the state files hold
                self.metrics_file.writelines(metric_line(r, e) for e in history)
        self.metrics_file.write(metric_line(role, event))
        self.metrics_file.flush()

    # -- outputs -------------------------------------------------------------------------------
    def resolved(self) -> dict:
        """The configuration as option names -> values: enough to repeat the run (--config)."""
        m = self.meta
        doc = {
            "checkpoint": m["checkpoint"],
            "arch": m["arch_name"],
            **m["arch_options"],
            "data": m["data"],
            "test_data": m["test_data"],
            "max_samples": m["max_samples"],
            "threads": m.get("threads"),
            "device": m.get("device", "auto"),
            "precision": m.get("precision", "auto"),
        }
        doc.update(self.cfg.to_dict())
        doc["baseline"] = m["baseline"]
        return doc

    def data_extras(self) -> dict:
        d = self.data
        return {
            "source": d.source,
            "mean": d.mean,
            "std": d.std,
            "num_classes": d.num_classes,
            "in_channels": d.in_channels,
            "input_shape": list(d.spatial_shape),
        }

    def write_model(self, output: Path, result, arch, cfg, role: str) -> None:
        from orthocli import checkpoint as ckpt_io

        sd = {k: v.detach().clone() for k, v in result.model.state_dict().items()}
        payload = ckpt_io.make_payload(
            sd,
            arch=arch,
            config=self.resolved(),
            history=result.history,
            data=self.data_extras(),
            summary=result.summary(),
            role=role,
            prune=result.record,
        )
        ckpt_io.save(output, payload, force=True)  # outputs were checked before training

    def close(self) -> dict | None:
        """Finish the files (metrics, plot; state files removed) and return the summary document;
        None on ranks other than 0, which write and report nothing."""
        from orthocli.runtime import teardown

        teardown(self.rt)
        if not self.rt.is_main:
            return None
        if self.metrics_file is not None:
            self.metrics_file.close()
        if self.meta["plot"]:
            from orthocli.plot import plot_history

            plot_history(Path(self.meta["plot"]), {r: res.history for r, (res, _) in self.results.items()})
        for _, output in self.results.values():
            state_path(output).unlink(missing_ok=True)
        return self.document()

    def document(self) -> dict:
        result, output = self.results["repr"]
        doc = {**result.summary(), "output": str(output)}
        if "baseline" in self.results:
            b, b_out = self.results["baseline"]
            doc["baseline"] = {**b.summary(), "output": str(b_out)}
        doc["runtime"] = self.rt.describe()
        doc["config"] = self.resolved()
        doc["data"] = self.data_extras()
        if self.meta["metrics"]:
            doc["metrics"] = self.meta["metrics"]
        if self.meta["plot"]:
            doc["plot"] = self.meta["plot"]
        return doc


# ---------------------------------------------------------------------------------------------
# Helpers


def default_output(arch: str) -> Path:
    name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in arch.split(":")[-1]) or "model"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    runs = Path("runs")
    runs.mkdir(exist_ok=True)
    return runs / f"{name}-{stamp}.pt"


def need_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'orthocli[plot]'") from None


def model_from_checkpoint(meta: dict, data):
    import torch

    from orthocli import checkpoint as ckpt_io
    from orthocli.errors import CheckpointError
    from orthocli.models import arch_spec, build_model, load_weights

    path = meta["checkpoint"]
    ck = ckpt_io.load(path, key=meta["key"], trust=meta["trust"])
    arch = ck.extras.get("arch")
    if arch is None and meta["arch_name"]:
        opts = {k: v for k, v in meta["arch_options"].items() if v is not None}
        arch = arch_spec(
            meta["arch_name"],
            in_channels=data.in_channels,
            num_classes=data.num_classes,
            input_shape=list(data.spatial_shape),
            **opts,
        )
    ck.check_finite()
    if arch is not None:
        model = load_weights(build_model(arch), ck.state_dict, path, arch)
    elif isinstance(ck.module, torch.nn.Module) and not isinstance(ck.module, torch.jit.ScriptModule):
        model = ck.module.float()
    elif ck.module is not None:
        raise CheckpointError(f"{path}: a TorchScript archive cannot be trained; start from its state dict with --arch")
    else:
        raise CheckpointError(
            f"{path}: records no architecture; give --arch (and its options) to build the model for these weights"
        )
    return model, arch, ck.extras.get("prune")


def metric_line(role: str, event: dict) -> str:
    keep = ("epoch", "phase", "cycle", "lr", "loss", "train_acc", "val_loss", "val_acc", "seconds")
    doc = {"run": role, **{k: event.get(k) for k in keep}}
    doc = {
        k: (None if isinstance(v, float) and v != v or v in (float("inf"), float("-inf")) else v)
        for k, v in doc.items()
    }
    return json.dumps(doc) + "\n"
