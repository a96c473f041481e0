"""MoRE: X-ray, ECG and report encoders projected into one L2-normalised space of dimension ``d``.

    model = moreclip.create_model("tiny")
    zx = model.encode_xray(x)                    # (B, 1, H, W) -> (B, d)
    ze = model.encode_ecg(ecg)                   # (B, 12, T)   -> (B, d)
    zt = model.encode_text(["no effusion"])      # list[str]    -> (B, d)
    emb = model(batch)                           # modality -> (B, d), zeros where absent
    model.save_pretrained("ckpt/")               # config.yaml + model.safetensors; moreclip.load("ckpt/")

Text towers: with ``text.share_encoder`` one encoder and head ("text") serves every kind of report
(``xray_report``, ``ecg_report`` and ``report``, the two joined); otherwise the X-ray and ECG reports get
their own tower and the joined ``report`` is not available. One learnable temperature ``logit_scale``
(log space, CLIP initialisation); :meth:`MoRE.temperature_scale` clamps it to ``[0, max_logit_scale]``
and exponentiates.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from moreclip.config import ModelConfig
from moreclip.models.ecg import EcgEncoder
from moreclip.models.heads import make_head
from moreclip.models.text import TextEncoder
from moreclip.models.vit import XrayEncoder

IMAGE_MODALITIES = ("xray", "ecg")
TEXT_KINDS = ("xray_report", "ecg_report", "report")
NO_DECAY_NAMES = ("pos_embed", "cls_token", "cls_pos", "lead_embed", "reg_token", "logit_scale")


def join_reports(xray_reports: list[str], ecg_reports: list[str], sep: str = " ") -> list[str]:
    """MoRE's single report per sample: the X-ray and the ECG report joined (empty parts skipped).

    Args:
        xray_reports: B radiology reports ("" when absent).
        ecg_reports: B ECG reports ("" when absent).
        sep: separator between the two.
    """
    return [sep.join(t for t in (a, b) if t) for a, b in zip(xray_reports, ecg_reports)]


def text_tower_dir(tower: str) -> str:
    """Sub-folder of a checkpoint that holds a text tower's backbone config and tokenizer."""
    return "text" if tower == "text" else f"text_{tower}"


class MoRE(nn.Module):
    """The multi-modal contrastive model.

    Args:
        cfg: the model config.
        text_sources: per text tower, a folder with the backbone config and tokenizer to use instead of
            ``cfg.text.model_name`` (a checkpoint's own copy).
        load_text_weights: False builds the text backbones with random weights (to be overwritten by
            a checkpoint's weights).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        text_sources: dict[str, str | os.PathLike] | None = None,
        load_text_weights: bool = True,
    ):
        super().__init__()
        self.config = cfg
        self.xray = XrayEncoder(cfg.xray)
        self.ecg = EcgEncoder(cfg.ecg)
        towers = ["text"] if cfg.text.share_encoder else ["xray_report", "ecg_report"]
        sources = text_sources or {}
        self.text = nn.ModuleDict(
            {t: TextEncoder(cfg.text, source=sources.get(t), load_weights=load_text_weights) for t in towers}
        )
        widths = {"xray": self.xray.width, "ecg": self.ecg.width, **{t: self.text[t].width for t in towers}}
        self.heads = nn.ModuleDict(
            {k: make_head(cfg.head, w, cfg.embed_dim, cfg.head_hidden) for k, w in widths.items()}
        )
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.init_logit_scale)))

    # ------------------------------------------------------------------------------- encoding
    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def temperature_scale(self) -> torch.Tensor:
        """``exp(logit_scale)`` with ``logit_scale`` clamped to ``[0, max_logit_scale]`` (CLIP); scalar."""
        return self.logit_scale.clamp(0.0, self.config.max_logit_scale).exp()

    def text_tower(self, kind: str) -> str:
        """The text tower (key of ``self.text`` and ``self.heads``) that encodes reports of ``kind``."""
        if kind not in TEXT_KINDS:
            raise ValueError(f"unknown text kind {kind!r} (expected one of {TEXT_KINDS})")
        if "text" in self.text:
            return "text"
        if kind == "report":
            raise ValueError("kind='report' (joined reports) needs model.text.share_encoder=true")
        return kind

    def encode_xray(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """``(B, 1, H, W)`` normalised radiographs -> ``(B, d)`` embeddings (L2-normalised by default)."""
        z = self.heads["xray"](self.xray(x.to(self.device)))
        return F.normalize(z, dim=-1) if normalize else z

    def encode_ecg(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """``(B, 12, T)`` ECG signals -> ``(B, d)`` embeddings (L2-normalised by default)."""
        z = self.heads["ecg"](self.ecg(x.to(self.device)))
        return F.normalize(z, dim=-1) if normalize else z

    def encode_text(self, texts: list[str], normalize: bool = True, kind: str = "report") -> torch.Tensor:
        """B reports (tokenised inside) -> ``(B, d)`` embeddings (L2-normalised by default).

        Args:
            texts: the reports or prompts.
            normalize: L2-normalise the embeddings.
            kind: ``"xray_report"``, ``"ecg_report"`` or ``"report"``; picks the text tower (all the
                same with a shared encoder).
        """
        tower = self.text_tower(kind)
        z = self.heads[tower](self.text[tower].encode(texts))
        return F.normalize(z, dim=-1) if normalize else z

    def encode(self, modality: str, data, normalize: bool = True) -> torch.Tensor:
        """Dispatch to :meth:`encode_xray`, :meth:`encode_ecg` or :meth:`encode_text` by modality name."""
        if modality == "xray":
            return self.encode_xray(data, normalize)
        if modality == "ecg":
            return self.encode_ecg(data, normalize)
        return self.encode_text(data, normalize, kind=modality)

    def available_modalities(self) -> list[str]:
        """Modalities this model can embed (``report`` only with a shared text encoder)."""
        return [*IMAGE_MODALITIES, "xray_report", "ecg_report", *(["report"] if "text" in self.text else [])]

    def forward(self, batch: dict, modalities: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Embed every present modality of a collated batch.

        Only the rows whose ``batch["mask"][modality]`` is True are encoded (absent rows never reach
        an encoder or a BatchNorm); their embeddings are scattered back into a ``(B, d)`` tensor whose
        other rows are zeros.

        Args:
            batch: a collated batch (``xray (B, 1, H, W)``, ``ecg (B, 12, T)``, ``xray_report`` /
                ``ecg_report`` lists of str, ``mask`` dict of ``(B,)`` bools; a missing mask means
                all rows present). ``report`` (joined reports) is taken from ``batch["report"]`` when
                given, else joined here with a space; its mask is either report's.
            modalities: which to embed (default: those of ``xray, ecg, xray_report, ecg_report`` in
                the batch).

        Returns:
            modality -> ``(B, d)`` L2-normalised embeddings (zeros for absent rows).
        """
        if modalities is None:
            modalities = [m for m in ("xray", "ecg", "xray_report", "ecg_report") if m in batch]
        masks = batch.get("mask", {})
        out = {}
        for m in modalities:
            if m == "report":
                data = batch.get("report") or join_reports(batch["xray_report"], batch["ecg_report"])
                mask = report_mask(masks, len(data))
            else:
                data = batch[m]
                mask = masks.get(m)
            n = len(data)
            mask = (
                torch.ones(n, dtype=torch.bool) if mask is None else torch.as_tensor(mask, dtype=torch.bool)
            )
            rows = mask.nonzero().squeeze(1).cpu()
            z = torch.zeros(n, self.embed_dim, device=self.device, dtype=self.logit_scale.dtype)
            if len(rows):
                sub = data[rows] if torch.is_tensor(data) else [data[i] for i in rows.tolist()]
                z = z.index_copy(0, rows.to(self.device), self.encode(m, sub).to(z.dtype))
            out[m] = z
        return out

    # ------------------------------------------------------------------------------- training helpers
    def param_groups(self, weight_decay: float) -> list[dict]:
        """Trainable parameters split for AdamW: decay on weight matrices, none on norms, biases,
        position/CLS/lead embeddings and the logit scale.

        Args:
            weight_decay: decay of the first group.
        """
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if p.ndim < 2 or any(k in name for k in NO_DECAY_NAMES):
                no_decay.append(p)
            else:
                decay.append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def parameter_summary(self) -> dict[str, dict[str, int]]:
        """Trainable and frozen parameter counts per component (``xray``, ``ecg``, text towers,
        ``heads``, ``logit_scale``) and ``total``."""
        parts = {"xray": self.xray, "ecg": self.ecg, **{f"text/{k}": v for k, v in self.text.items()}}
        parts["heads"] = self.heads
        out = {}
        for name, mod in parts.items():
            ps = list(mod.parameters())
            out[name] = {
                "trainable": sum(p.numel() for p in ps if p.requires_grad),
                "frozen": sum(p.numel() for p in ps if not p.requires_grad),
            }
        out["logit_scale"] = {"trainable": 1 if self.logit_scale.requires_grad else 0, "frozen": 0}
        out["total"] = {k: sum(v[k] for v in out.values()) for k in ("trainable", "frozen")}
        return out

    def save_pretrained(self, path: str | os.PathLike, include_frozen: bool = True) -> Path:
        """Write ``config.yaml`` + ``model.safetensors`` (+ text backbone config/tokenizer) to ``path``.

        See :func:`moreclip.models.checkpoint.save_pretrained`.
        """
        from moreclip.models.checkpoint import save_pretrained

        return save_pretrained(self, path, include_frozen=include_frozen)


def report_mask(masks: dict, n: int) -> torch.Tensor | None:
    """Presence of the joined report: either report present. None when the batch has no report masks.

    Args:
        masks: the batch's presence masks.
        n: batch size.
    """
    parts = [masks[k] for k in ("xray_report", "ecg_report") if k in masks]
    if not parts:
        return None
    out = torch.zeros(n, dtype=torch.bool)
    for p in parts:
        out = out | torch.as_tensor(p, dtype=torch.bool).cpu()
    return out
