"""Frozen-prefix cache of the text encoder: the bottom layers' hidden states, computed once per report.

With LoRA only in the top layers (``lora_layers: [-2, -1]``) the embeddings and the layers below the
lowest adapter are frozen and run in eval mode (see :class:`~moreclip.models.text.TextEncoder`), so the
hidden states entering the lowest adapter layer are a deterministic function of a report's token ids.
:class:`FrozenPrefix` keeps them, per distinct token sequence and without padding, in a byte-bounded LRU
(:class:`PrefixCache`, float32, exact) and runs only the top layers on a hit. Reports come back every
epoch, so from the second epoch on the text tower costs its top layers (forward + backward) only.

How it runs inside any Hugging Face backbone, without re-implementing attention masks or positions:

- **a batch with nothing cached** (the first epoch): the plain forward, unchanged (so bit-identical to
  the uncached path and no dearer); a pre-hook on the split layer keeps each row's input states;
- **misses among hits**: the backbone's own forward on the missed rows under ``no_grad``; a pre-hook on
  the split layer takes its input hidden states and stops the forward there (nothing above it runs);
- **then the batch**: the backbone's own forward again, with the prefix layers replaced by the identity for
  the duration of the call and the split layer's input replaced by the cached states (padding
  positions zero; padding is masked out of attention, so real tokens see exactly what they saw).
  The embeddings still run (cheap, output discarded); masks, rotary/absolute positions and LoRA
  dropout are the model's own, so embeddings and gradients equal the uncached path up to float
  rounding (~1e-7 relative): cached states may come from a batch of another shape. A warm cache may
  therefore differ from a cold one in the last bits, as the uncached path differs between batch
  compositions.

With a fully frozen backbone (no LoRA, ``freeze_backbone``) the split is the top of the stack: the
cache holds the last hidden states and a hit skips the backbone.

Exactness conditions, checked once at construction (else :meth:`FrozenPrefix.plan` says why and the
encoder runs uncached): a layer stack, nothing trainable below the split, right padding (with left
padding the positions of a text depend on the batch). Checked per call (else that call runs uncached):
token ids given (not ``inputs_embeds``), right-padded masks, the prefix still frozen, the backbone not
``torch.compile``-d. The cache is cleared when a prefix weight changes (``load_state_dict``, ``.to()``:
tracked by tensor version and address) and keyed by the autocast state. It is never saved.
Counters: ``hits``/``misses`` count distinct texts per call.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict

import torch
from torch import nn

log = logging.getLogger(__name__)


class PrefixCache:
    """LRU of per-text tensors bounded by bytes.

    Args:
        max_bytes: capacity; the least recently used entries are evicted beyond it (an entry larger
            than the whole capacity is not stored).
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._data: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: bytes) -> bool:
        return key in self._data

    def get(self, key: bytes) -> torch.Tensor | None:
        """The tensor stored under ``key`` (now most recently used), or None; counts a hit or a miss."""
        t = self._data.get(key)
        if t is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return t

    def put(self, key: bytes, value: torch.Tensor) -> None:
        """Store ``value`` under ``key``, evicting least recently used entries to stay within capacity."""
        size = value.numel() * value.element_size()
        if size > self.max_bytes:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old.numel() * old.element_size()
        while self._data and self.bytes + size > self.max_bytes:
            _, ev = self._data.popitem(last=False)
            self.bytes -= ev.numel() * ev.element_size()
            self.evictions += 1
        self._data[key] = value
        self.bytes += size

    def clear(self) -> None:
        """Drop every entry (counters are kept)."""
        self._data.clear()
        self.bytes = 0

    def stats(self) -> dict:
        """``hits``, ``misses``, ``hit_rate``, ``evictions``, ``entries``, ``bytes``, ``max_bytes``."""
        n = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hits / n if n else 0.0,
            "evictions": self.evictions,
            "entries": len(self._data),
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
        }


class _Stop(Exception):
    """Raised by the capture hook to end a backbone forward at the split layer."""


def _hidden_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


class FrozenPrefix:
    """Serves the frozen bottom of a Hugging Face backbone from a :class:`PrefixCache`.

    Args:
        backbone: the (LoRA-injected) Hugging Face model.
        layers: its transformer layer stack.
        split: index of the lowest layer that runs every call (``len(layers)``: none does).
        max_bytes: cache capacity in bytes.
    """

    def __init__(self, backbone: nn.Module, layers: nn.ModuleList, split: int, max_bytes: int):
        self.backbone, self.layers, self.split = backbone, layers, split
        self.cache = PrefixCache(max_bytes)
        ids = {id(p) for layer in layers[split:] for p in layer.parameters()}
        self._prefix_names = [n for n, p in backbone.named_parameters() if id(p) not in ids]
        self._fingerprint: tuple | None = None
        self._tuple_out: bool | None = None  # whether a layer returns a tuple (probed on the first miss)
        self._warned: set[str] = set()

    @staticmethod
    def plan(backbone: nn.Module, layers: nn.ModuleList, tokenizer) -> tuple[int | None, str]:
        """The split layer index for ``backbone`` (None when the cache cannot be exact) and why.

        Args:
            backbone: the Hugging Face model with its trainable parameters marked.
            layers: its transformer layer stack.
            tokenizer: its tokenizer (must pad on the right).
        """
        trainable = [i for i, layer in enumerate(layers) if any(p.requires_grad for p in layer.parameters())]
        split = min(trainable) if trainable else len(layers)
        top = {id(p) for layer in layers[split:] for p in layer.parameters()}
        if split == 0:
            return None, "the lowest layer is trainable (no frozen prefix)"
        if any(p.requires_grad for p in backbone.parameters() if id(p) not in top):
            return None, "parameters outside the transformer layers are trainable"
        if getattr(tokenizer, "padding_side", "right") != "right":
            return None, "the tokenizer pads on the left (positions would depend on the batch)"
        return split, f"layers 0-{split - 1} of {len(layers)} cached"

    def _warn_once(self, why: str) -> None:
        if why not in self._warned:
            self._warned.add(why)
            log.info("text prefix cache bypassed: %s", why)

    def _check_weights(self, device: torch.device) -> bool:
        """False when a prefix parameter became trainable; clears the cache when a weight changed."""
        params = dict(self.backbone.named_parameters())
        fp = []
        for n in self._prefix_names:
            p = params[n]
            if p.requires_grad:
                return False
            fp.append((p.data_ptr(), p._version, p.dtype))
        fp = (str(device), *fp)
        if fp != self._fingerprint:
            if self._fingerprint is not None and len(self.cache):
                log.debug("text prefix weights changed: cache cleared")
            self.cache.clear()
            self._fingerprint = fp
        return True

    def _usable(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor | None:
        """Per-row token counts when this call can use the cache, else None."""
        if getattr(self.backbone, "_compiled_call_impl", None) is not None:
            self._warn_once("the backbone is torch.compile-d")
            return None
        if not self._check_weights(input_ids.device):
            self._warn_once("a frozen-prefix parameter requires grad")
            return None
        lengths = attention_mask.sum(1)
        right = torch.arange(attention_mask.shape[1], device=attention_mask.device) < lengths[:, None]
        if not torch.equal(attention_mask.bool(), right):
            self._warn_once("attention mask is not right-padded")
            return None
        return lengths

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs
    ) -> torch.Tensor | None:
        """Last hidden states ``(B, L, W)`` through the cache, or None when this call cannot use it
        (the caller then runs the backbone itself). Hidden states at padding positions are unspecified.

        Args:
            input_ids: ``(B, L)`` token ids.
            attention_mask: ``(B, L)`` right-padded mask.
            **kwargs: passed to the backbone's forward (e.g. ``use_cache=False``).
        """
        lengths = self._usable(input_ids, attention_mask)
        if lengths is None:
            return None
        dev = input_ids.device.type
        tag = (
            b"a%s|" % str(torch.get_autocast_dtype(dev)).encode() if torch.is_autocast_enabled(dev) else b"f|"
        )
        ids = input_ids.detach().to("cpu", torch.int64).numpy()
        lens = lengths.tolist()
        keys = [tag + ids[i, :n].tobytes() for i, n in enumerate(lens)]
        got: dict[bytes, torch.Tensor] = {}
        missed: dict[bytes, int] = {}  # key -> first row
        for i, k in enumerate(keys):
            if k in got or k in missed:
                continue
            t = self.cache.get(k)
            if t is None:
                missed[k] = i
            else:
                got[k] = t
        if missed and not got:  # nothing cached: the plain forward, keeping the split layer's input
            out, h = self._forward_keeping(input_ids, attention_mask, kwargs)
            self._store(missed, h, lens, got)
            return out
        if missed:  # the missed rows' prefix alone, stopped at the split layer
            rows = list(missed.values())
            width = max(lens[i] for i in rows)
            sub = torch.tensor(rows, device=input_ids.device)
            with torch.no_grad():
                h = self._capture(input_ids[sub, :width], attention_mask[sub, :width], kwargs)
            self._store(
                {k: j for j, k in enumerate(missed)}, h, {j: lens[i] for j, i in enumerate(rows)}, got
            )
        seqs = [got[k] for k in keys]
        hidden = nn.utils.rnn.pad_sequence(seqs, batch_first=True)
        if hidden.shape[1] < input_ids.shape[1]:
            hidden = nn.functional.pad(hidden, (0, 0, 0, input_ids.shape[1] - hidden.shape[1]))
        if self.split == len(self.layers):
            return hidden
        return self._run_top(input_ids, attention_mask, hidden, kwargs)

    def _store(self, rows: dict[bytes, int], h: torch.Tensor, lens, got: dict) -> None:
        """Cache ``h[row, :length]`` (as a normal, detached tensor) under each key of ``rows``."""
        with torch.inference_mode(False):  # normal tensors, usable by later training steps
            for k, r in rows.items():
                got[k] = h[r, : lens[r]].detach().clone()
                self.cache.put(k, got[k])

    def _hooks(self, take) -> list:
        """A pre-hook ``take`` on the split layer and, until probed, the layer output-type probe."""

        def probe(module, args, out):
            self._tuple_out = isinstance(out, tuple)

        hooks = [self.layers[self.split].register_forward_pre_hook(take, with_kwargs=True)]
        if self._tuple_out is None:
            hooks.append(self.layers[self.split - 1].register_forward_hook(probe))
        return hooks

    def _forward_keeping(self, input_ids, attention_mask, kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """The plain backbone forward: last hidden states and the split layer's input (or the last
        hidden states again when the split is the top)."""
        if self.split == len(self.layers):
            out = self.backbone(
                input_ids=input_ids, attention_mask=attention_mask, **kwargs
            ).last_hidden_state
            return out, out
        box = {}
        hooks = self._hooks(lambda module, args, kw: box.__setitem__("h", _hidden_arg(args, kw)))
        try:
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        finally:
            for h in hooks:
                h.remove()
        return out.last_hidden_state, box["h"]

    def _capture(self, input_ids, attention_mask, kwargs) -> torch.Tensor:
        """Hidden states entering the split layer (the last hidden states when it is the top)."""
        if self.split == len(self.layers):
            return self.backbone(
                input_ids=input_ids, attention_mask=attention_mask, **kwargs
            ).last_hidden_state
        box = {}

        def take(module, args, kw):
            box["h"] = _hidden_arg(args, kw)
            raise _Stop

        hooks = self._hooks(take)
        try:
            self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        except _Stop:
            pass
        finally:
            for h in hooks:
                h.remove()
        if "h" not in box:  # pragma: no cover - a backbone that does not call its layers in order
            raise RuntimeError("text prefix cache: the split layer was never called")
        return box["h"]

    def _run_top(self, input_ids, attention_mask, hidden, kwargs) -> torch.Tensor:
        """The backbone's forward with the prefix layers skipped and ``hidden`` fed to the split layer."""
        tuple_out = bool(self._tuple_out)

        def skip(hidden_states=None, *args, **kw):
            return (hidden_states,) if tuple_out else hidden_states

        def inject(module, args, kw):
            if args:
                return (hidden, *args[1:]), kw
            return args, {**kw, "hidden_states": hidden}

        prefix = list(self.layers[: self.split])
        with contextlib.ExitStack() as stack:
            for layer in prefix:
                layer.forward = skip
                stack.callback(delattr, layer, "forward")
            stack.enter_context(self.layers[self.split].register_forward_pre_hook(inject, with_kwargs=True))
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return out.last_hidden_state
