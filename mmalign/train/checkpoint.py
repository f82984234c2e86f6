"""Checkpoints that a killed run resumes from exactly, and a final folder `from_pretrained` reads.

A checkpoint holds the trainable parameters (safetensors), the optimizer and scheduler state
(`torch.save`, read back with `weights_only=True`), the RNG states and the trainer's counters.
It is written into a temporary folder and renamed into place, so a kill mid-save leaves
the previous checkpoint as the latest complete one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mmalign.io import DIR_MODE, atomic_write_json

STATE = "trainer_state.json"


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a full disk, say); the earlier ones are untouched."""


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(folder: Path, model, optimizer, scheduler, state: dict, keep: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{state['step']:07d}"
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".tmp-"))
    os.chmod(tmp, DIR_MODE)
    try:
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        (tmp / STATE).write_text(json.dumps(state))  # written last inside the temp folder
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        kept = [p.name for p in sorted(folder.glob("step-*")) if (p / STATE).exists()]
        raise CheckpointWriteError(f"{final}: writing the checkpoint failed ({e.strerror or e}); earlier checkpoints "
                                   f"are intact: {', '.join(kept) or 'none yet'} (resume from them with --resume)") \
            from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in sorted(folder.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    done = [p for p in sorted(folder.glob("step-*")) if (p / STATE).exists()]
    return done[-1] if done else None


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict:
    params = load_file(str(path / "trainable.safetensors"))
    missing = set(params) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ValueError(f"{path}: checkpoint parameters not in the model: {sorted(missing)[:5]}")
    model.load_state_dict(params, strict=False)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    torch.set_rng_state(load_file(str(path / "rng.safetensors"))["torch"])
    return json.loads((path / STATE).read_text())


def save_final(folder: Path, model, processor, state_dict: dict | None = None) -> Path:
    """Write a plain transformers checkpoint (LoRA merged; adapter kept beside it).

    `state_dict`: the full weights gathered from a sharded run (FSDP, ZeRO-3), where the
    local module holds only a shard. A sharded LoRA run saves the adapter alone: merging
    needs the whole base weights on one process.
    """
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(model, "merge_and_unload"):
        model.save_pretrained(tmp / "adapter", state_dict=state_dict)
        if state_dict is None:
            model = model.merge_and_unload()
            model.save_pretrained(tmp)
    else:
        model.save_pretrained(tmp, state_dict=state_dict)
    processor.save_pretrained(tmp)
    atomic_write_json(tmp / "DONE.json", {"complete": True})
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def is_final(folder: Path) -> bool:
    return (folder / "DONE.json").exists()
