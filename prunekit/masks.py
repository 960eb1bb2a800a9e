"""Per-parameter boolean masks: density, apply, enforce after every step, save and load.

A :class:`Masks` maps parameter names (as in ``model.named_parameters()``) to boolean tensors of
the parameter's shape; ``True`` means the weight is kept. Pruned weights stay exactly zero for
the whole of training: :meth:`Masks.enforcer` returns a :class:`MaskEnforcer` that, after each
optimizer step, sets the weights *and* every optimizer state tensor of a parameter's shape to
exactly zero at pruned positions (never by testing ``w != 0``, so a surviving weight that happens
to be 0 keeps training).

Zeroing is not a multiplication by the mask: NaN x 0 is NaN, so a diverged run would bring
pruned weights back. It multiplies the tensors' *bits*, seen as integers of the same width, by
0 or 1 with one foreach op per list: exact for every value (NaN and inf included, and 0.0 never
becomes -0.0), as fast as a float multiply.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from prunekit.atomic import atomic_path
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
        """Set the pruned weights of ``model`` to exactly zero in place (NaN and inf included)."""
        self.check_fits(model)
        named = dict(model.named_parameters())
        params = [named[n] for n in self._masks]
        _zero_pruned(params, [m.to(p.device) for m, p in zip(self._masks.values(), params)])

    def enforcer(
        self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
    ) -> MaskEnforcer:
        """What to run after every optimizer step: re-zero pruned weights and their optimizer
        state (see :class:`MaskEnforcer`). Create it after the model is on its device."""
        self.check_fits(model)
        return MaskEnforcer(self, model, optimizer)

    # --- files --------------------------------------------------------------------------
    def save(self, path: str | Path, metadata: Mapping[str, object] | None = None) -> Path:
        """Write a safetensors file (uint8 tensors) with JSON metadata, atomically."""
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
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
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


# ------------------------------------------------------------------------------- enforcement
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits(t: torch.Tensor) -> torch.Tensor | None:
    """``t``'s storage seen as integers of the same width (None when no such integer type)."""
    t = t.detach()
    if t.dtype == torch.bool:
        return t.view(torch.uint8)
    if not (t.is_floating_point() or t.is_complex()):
        return t
    width = _BITS.get(t.element_size())
    return t.view(width) if width is not None else None


@torch.no_grad()
def _zero_pruned(tensors: Sequence[torch.Tensor], keep: Sequence[torch.Tensor]) -> None:
    """Zero every ``tensors[i]`` where ``keep[i]`` is False, whatever the value there."""
    views, factors = [], []
    for t, k in zip(tensors, keep):
        bits = _bits(t)
        if bits is None:  # e.g. complex128: no integer of its width
            t.masked_fill_(~k, 0)
            continue
        views.append(bits)
        factors.append(k.to(bits.dtype))
    if views:
        torch._foreach_mul_(views, factors)


_View = tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]


class MaskEnforcer:
    """Keeps pruned positions exactly zero in a model's weights, their gradients and the
    optimizer's state.

    * calling it, after every optimizer step: zeroes the weights, and every tensor in
      ``optimizer.state[p]`` whose shape equals ``p``'s (SGD's momentum buffer, Adam's
      ``exp_avg`` and ``exp_avg_sq``, any state a plugin's optimizer keeps), found again at
      every call, so optimizers that create or replace state tensors are covered;
    * :meth:`gradients`, before the step: zeroes pruned gradients, so that a global gradient
      norm (clipping) or an optimizer that couples coordinates sees only the kept weights.

    Zeroing multiplies the tensors' bits by 0 or 1 (see the module docs), so NaN and inf at a
    pruned position become 0 too. Each mask is converted once per (device, integer width).
    """

    def __init__(
        self, masks: Masks, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        named = dict(model.named_parameters())
        self.params = [named[n] for n in masks]
        self.optimizer = optimizer
        self._keep = [masks[n].to(p.device) for n, p in zip(masks, self.params)]
        # masks as 0/1 integers laid out like the tensors they multiply (channels_last too), so
        # foreach takes its fast path
        self._factors: dict[tuple[int, torch.device, torch.dtype, tuple[int, ...]], torch.Tensor] = {}
        # (tensor, its storage address, integer view, factor) by id(tensor), from the last call
        # of each kind: making a view costs more than looking one up; a moved tensor gets a new one
        self._views: dict[str, dict[int, _View]] = {"step": {}, "gradients": {}}

    def _zero(self, kind: str, pairs: Sequence[tuple[int, torch.Tensor]]) -> None:
        """Zero the pruned positions of tensor ``t`` of parameter ``i`` for every ``(i, t)``."""
        views, factors = [], []
        known, self._views[kind] = self._views[kind], {}
        for i, t in pairs:
            entry = known.get(id(t))
            if entry is None or entry[0] is not t or entry[1] != t.data_ptr():
                bits = _bits(t)
                if bits is None:  # no integer of its width (complex128)
                    t.detach().masked_fill_(~self._keep[i].to(t.device), 0)
                    continue
                key = (i, t.device, bits.dtype, bits.stride())
                factor = self._factors.get(key)
                if factor is None:
                    factor = torch.empty_like(bits).copy_(self._keep[i])
                    self._factors[key] = factor
                entry = (t, t.data_ptr(), bits, factor)
            self._views[kind][id(t)] = entry
            views.append(entry[2])
            factors.append(entry[3])
        if views:
            torch._foreach_mul_(views, factors)

    @torch.no_grad()
    def __call__(self) -> None:
        pairs: list[tuple[int, torch.Tensor]] = list(enumerate(self.params))
        if self.optimizer is not None:
            for i, p in enumerate(self.params):
                state = self.optimizer.state.get(p)
                if state:
                    pairs.extend(
                        (i, v) for v in state.values() if torch.is_tensor(v) and v.shape == p.shape
                    )
        self._zero("step", pairs)

    @torch.no_grad()
    def gradients(self) -> None:
        """Zero the gradients at pruned positions (before clipping and the optimizer step)."""
        self._zero("gradients", [(i, p.grad) for i, p in enumerate(self.params) if p.grad is not None])
