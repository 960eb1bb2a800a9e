"""Per-parameter boolean masks: density, apply, enforce after every step, save and load.

A :class:`Masks` maps parameter names (as in ``model.named_parameters()``) to boolean tensors of
the parameter's shape; ``True`` means the weight is kept. Pruned weights stay exactly zero for
the whole of training: :meth:`Masks.enforcer` returns a callable that, after each optimizer
step, multiplies the weights *and* the optimizer state at masked positions by zero with foreach
ops (never by testing ``w != 0``, so a surviving weight that happens to be 0 keeps training).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from prunekit.errors import MaskMismatchError, PrunekitError

FORMAT = "prunekit.masks/1"


class Masks(Mapping[str, torch.Tensor]):
    """Ordered mapping of parameter name -> bool tensor (True = kept)."""

    def __init__(self, masks: Mapping[str, torch.Tensor]) -> None:
        self._masks = {name: m.to(torch.bool) for name, m in masks.items()}

    # --- construction -------------------------------------------------------------------
    @classmethod
    def ones(cls, model: nn.Module, names: list[str]) -> Masks:
        params = dict(model.named_parameters())
        return cls({n: torch.ones_like(params[n], dtype=torch.bool) for n in names})

    # --- mapping ------------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def to(self, device: torch.device | str) -> Masks:
        return Masks({n: m.to(device) for n, m in self._masks.items()})

    # --- counting -----------------------------------------------------------------------
    def kept(self) -> int:
        return int(sum(int(m.sum()) for m in self._masks.values()))

    def total(self) -> int:
        return int(sum(m.numel() for m in self._masks.values()))

    def density(self) -> float:
        total = self.total()
        return self.kept() / total if total else 1.0

    def sparsity(self) -> float:
        return 1.0 - self.density()

    def layer_kept(self) -> dict[str, int]:
        return {n: int(m.sum()) for n, m in self._masks.items()}

    def layer_density(self) -> dict[str, float]:
        return {n: int(m.sum()) / m.numel() for n, m in self._masks.items()}

    def equals(self, other: Masks) -> bool:
        return list(self) == list(other) and all(
            torch.equal(self[n].cpu(), other[n].cpu()) for n in self
        )

    def content_hash(self) -> str:
        """sha256 over names, shapes and bits: equal masks hash equal on any device."""
        h = hashlib.sha256()
        for name, m in self._masks.items():
            h.update(name.encode())
            h.update(str(tuple(m.shape)).encode())
            h.update(m.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    # --- applying -----------------------------------------------------------------------
    def check_fits(self, model: nn.Module, source: str = "the masks") -> None:
        """Raise :class:`MaskMismatchError` listing every name or shape that does not fit."""
        params = dict(model.named_parameters())
        missing = [n for n in self._masks if n not in params]
        wrong = [
            f"{n} {tuple(m.shape)} vs {tuple(params[n].shape)}"
            for n, m in self._masks.items()
            if n in params and tuple(params[n].shape) != tuple(m.shape)
        ]
        if missing or wrong:
            parts = []
            if missing:
                shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
                parts.append(f"{len(missing)} names not in the model ({shown})")
            if wrong:
                shown = "; ".join(wrong[:5]) + (" ..." if len(wrong) > 5 else "")
                parts.append(f"{len(wrong)} shapes differ ({shown})")
            raise MaskMismatchError(
                f"{source} do not fit {type(model).__name__}: {', '.join(parts)}; "
                "use the mask file made for this model and number of classes"
            )

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero the pruned weights of ``model`` in place."""
        self.check_fits(model)
        params, masks = self._pairs(model)
        torch._foreach_mul_(params, masks)

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        named = dict(model.named_parameters())
        params = [named[n] for n in self._masks]
        masks = [m.to(device=p.device, dtype=p.dtype) for m, p in zip(self._masks.values(), params)]
        return params, masks

    def enforcer(
        self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
    ) -> Callable[[], None]:
        """A callable to run after every optimizer step: re-zero pruned weights and their state.

        Masks are converted to the parameters' dtype and device once; each call is one foreach
        multiply over the weights and one per kind of optimizer state (momentum buffers, Adam
        moments), collected once the optimizer has created them.
        """
        self.check_fits(model)
        params, masks = self._pairs(model)
        state_lists: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
        collected = False

        def collect() -> bool:
            if optimizer is None:
                return True
            by_key: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
            for p, m in zip(params, masks):
                state = optimizer.state.get(p)
                if not state:
                    return False
                for key, value in state.items():
                    if torch.is_tensor(value) and value.shape == p.shape:
                        ts, ms = by_key.setdefault(key, ([], []))
                        ts.append(value)
                        ms.append(m if value.dtype == m.dtype else m.to(value.dtype))
            state_lists.extend(by_key.values())
            return True

        @torch.no_grad()
        def enforce() -> None:
            nonlocal collected
            torch._foreach_mul_(params, masks)
            if not collected:
                collected = collect()
            for tensors, ms in state_lists:
                torch._foreach_mul_(tensors, ms)

        return enforce

    # --- files --------------------------------------------------------------------------
    def save(self, path: str | Path, metadata: Mapping[str, object] | None = None) -> Path:
        """Write a safetensors file (uint8 tensors) with JSON metadata; atomic (tmp + rename)."""
        path = Path(path)
        meta = {
            "format": FORMAT,
            "content_hash": self.content_hash(),
            "names": json.dumps(list(self._masks)),  # safetensors does not keep the order
        }
        for key, value in (metadata or {}).items():
            meta[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        tensors = {n: m.detach().cpu().to(torch.uint8).contiguous() for n, m in self._masks.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            save_file(tensors, str(tmp), metadata=meta)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> tuple[Masks, dict[str, str]]:
        """Read a mask file; raise a one-line error for a missing or foreign file."""
        path = Path(path)
        if not path.is_file():
            raise PrunekitError(f"mask file {path} does not exist; create one with `prunekit prune`")
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise PrunekitError(f"{path} is not a prunekit mask file ({err})") from None
        if meta.get("format") != FORMAT:
            raise PrunekitError(
                f"{path} is not a prunekit mask file (format {meta.get('format')!r}, "
                f"expected {FORMAT!r}); create one with `prunekit prune`"
            )
        try:
            order = json.loads(meta.get("names", "[]"))
        except json.JSONDecodeError:
            order = []
        if sorted(order) != sorted(tensors):
            order = list(tensors)
        masks = cls({n: tensors[n].to(torch.bool) for n in order})
        if meta.get("content_hash") not in (None, masks.content_hash()):
            raise PrunekitError(f"{path} is corrupt: its content hash does not match its masks")
        return masks, meta
