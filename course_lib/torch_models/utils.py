"""Small helpers shared by the PyTorch models: device choice and seeding."""
from __future__ import annotations

import numpy as np
import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` into CUDA when a GPU is present, else the CPU.

    Any other value is passed to ``torch.device``; asking for CUDA on a machine without it is
    an error that says so instead of failing later inside a kernel.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} asks for CUDA, but torch sees no GPU here; "
            "use device='auto' or device='cpu'"
        )
    return dev


def torch_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded generator, so that two runs with the same seed draw the same numbers."""
    gen = torch.Generator(device=torch.device(device).type)
    gen.manual_seed(int(seed))
    return gen


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch's global generator (used by layer initialisation) and return a numpy one."""
    torch.manual_seed(int(seed))
    return np.random.default_rng(int(seed))


def minimise(terms, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """One optimiser step on what a ``loss_fn`` returned: a scalar tensor, or a dict whose ``"loss"``
    is the scalar to minimise (its other entries are only recorded). Returns every entry as a float."""
    objective = terms["loss"] if isinstance(terms, dict) else terms
    if not (isinstance(objective, torch.Tensor) and objective.dim() == 0):
        raise ValueError("loss_fn must return a scalar tensor, or a dict with the scalar tensor to minimise "
                         f"under 'loss'; got {type(objective).__name__}")
    optimizer.zero_grad()
    objective.backward()
    optimizer.step()
    if not isinstance(terms, dict):
        return {"loss": float(objective.detach())}
    return {name: float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
            for name, value in terms.items()}


class TextBatch:
    """The input of every content encoder: padded word ids, their mask, and the paper indices.

    ``ids`` is ``(batch, seq_len)`` int64 (0 is padding), ``mask`` ``(batch, seq_len)`` float32
    with 1.0 on real tokens, ``paper_idx`` ``(batch,)`` int64. Encoders that look papers up by
    index (paragraph vectors) use ``paper_idx``; encoders that read text use ``ids`` and ``mask``.
    """

    def __init__(self, ids: torch.Tensor, mask: torch.Tensor, paper_idx: torch.Tensor):
        if ids.shape != mask.shape:
            raise ValueError(f"ids {tuple(ids.shape)} and mask {tuple(mask.shape)} must have the same shape")
        if ids.shape[0] != paper_idx.shape[0]:
            raise ValueError(f"ids has {ids.shape[0]} rows but paper_idx has {paper_idx.shape[0]}")
        self.ids, self.mask, self.paper_idx = ids, mask, paper_idx

    @classmethod
    def from_arrays(cls, ids: np.ndarray, mask: np.ndarray, paper_idx: np.ndarray, device="cpu") -> "TextBatch":
        dev = resolve_device(device)
        return cls(
            torch.as_tensor(np.asarray(ids), dtype=torch.long, device=dev),
            torch.as_tensor(np.asarray(mask), dtype=torch.float32, device=dev),
            torch.as_tensor(np.asarray(paper_idx), dtype=torch.long, device=dev),
        )

    def to(self, device) -> "TextBatch":
        dev = resolve_device(device)
        return TextBatch(self.ids.to(dev), self.mask.to(dev), self.paper_idx.to(dev))

    def __len__(self) -> int:
        return self.ids.shape[0]
