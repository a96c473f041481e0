"""A tiny MoRE model trained in seconds on the synthetic cohort, for testing explanations against ground truth.

The synthetic generator knows where each finding is drawn (``boxes``: image fractions). This module
renders patients in memory (:func:`moreclip.data.synthetic.render_patient`), preprocesses them with the
library's own functions, and trains a small model with a supervised-contrastive shortcut of MoRE's
objective: each X-ray is contrasted (CLIP's image-to-text InfoNCE, temperature learnt) against the bank
{"no abnormality", "pleural effusion"}, each ECG against the rhythm prompts, the prompts going through
the model's own text tower (frozen backbone, features computed once; the text head is trained).

What makes the test meaningful (measured while building it, see benchmarks/explain.py):

- counterfactual negatives: every training patient with an effusion is drawn a second time with the
  effusion removed (same random stream), so nothing correlated with effusions (edema, cardiomegaly,
  lines) can stand in for it; bilateral effusions are among the positives, so "the two lung bases differ"
  is not a shortcut either (a model trained on one-sided effusions only learnt to look at the normal
  lung, and its maps pointed there);
- one transformer block in the X-ray ViT: with 2-3 blocks trained for a few hundred steps, the maps of
  some seeds pointed at the effusion and of others at the opposite lung, at similar accuracy.

Used by tests/test_explain_pointing.py and benchmarks/explain.py.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from moreclip.data.preprocess import PreprocessOptions, normalize_leads, preprocess_ecg
from moreclip.data.synth_latent import patient_rng, sample_patients
from moreclip.data.synth_xray import render_xray
from moreclip.data.synthetic import render_patient
from moreclip.models import create_model

SEED = 1  # cohort seed
NO_FINDING = "no abnormality"
RHYTHMS = {
    "sinus": "sinus rhythm",
    "sinus_tachycardia": "sinus tachycardia",
    "sinus_bradycardia": "sinus bradycardia",
    "atrial_fibrillation": "atrial fibrillation",
    "paced": "ventricular-paced rhythm",
}
ECG_PROMPTS = tuple(RHYTHMS.values())
ARCH = {
    "embed_dim": 64,
    "xray": {"img_size": 64, "patch_size": 8, "embed_dim": 64, "depth": 1, "num_heads": 2,
             "dropkey_rate": 0.0, "global_pool": "avg"},
    "ecg": {"embed_dim": 64, "depth": 2, "num_heads": 2, "dropkey_rate": 0.0},
}  # fmt: skip


@dataclass(frozen=True)
class Finding:
    """A drawn finding: its prompt, which patients have it, how to remove it, where it is drawn."""

    prompt: str
    box: str  # key of render_xray's boxes
    side: str  # Patient field: "left" / "right" (the patient's side; drawn on the image's other side)
    remove: dict  # Patient fields that take the finding away
    train_ok: tuple[str, ...]  # values of ``side`` allowed in training
    size: str | None = None  # Patient field that must be in ``sizes``
    sizes: tuple[str, ...] = ()


FINDINGS = {
    "pacemaker": Finding("pacemaker", "device", "device_side", {"device": "none", "device_side": "none",
                         "device_leads": 0}, ("left", "right")),
    "effusion": Finding("pleural effusion", "effusion", "effusion_side", {"effusion_side": "none",
                        "effusion_size": "none"}, ("left", "right", "bilateral"), "effusion_size",
                        ("moderate", "large")),
}  # fmt: skip


def has(f: Finding, p) -> bool:
    """Whether patient ``p`` shows finding ``f`` (visibly: in an allowed size)."""
    return getattr(p, f.side) in f.train_ok and (f.size is None or getattr(p, f.size) in f.sizes)


@dataclass
class Split:
    ids: list[int]
    xray: torch.Tensor  # (N, 1, S, S) normalised
    ecg: torch.Tensor  # (N, 12, T) normalised
    ecg_mv: np.ndarray  # (N, 12, 5000) raw mV at 500 Hz
    images: np.ndarray  # (N, S, S) uint8
    y_xray: torch.Tensor  # (N,) 1: shows the finding, 0: not (index into prompts(f))
    y_ecg: torch.Tensor  # (N,) index into ECG_PROMPTS
    boxes: list  # the finding's box (x0, y0, x1, y1) or None
    ecg_reports: list[str]


def select(f: Finding, n_train: int, n_test_side: int, seed: int = SEED, pool: int = 12000):
    """Patients showing finding ``f``: a test set of ``n_test_side`` one-sided cases drawn on the image's
    left followed by as many on its right (taken from the end of the pool), and up to ``n_train`` other
    cases for training. Returns ``(train ids, test ids)``."""
    ps = sample_patients(pool, seed)
    ok = [i for i, p in enumerate(ps) if has(f, p) and p.rhythm in RHYTHMS]
    # the patient's left is drawn on the image's right
    img_left = [i for i in ok if getattr(ps[i], f.side) == "right"][-n_test_side:]
    img_right = [i for i in ok if getattr(ps[i], f.side) == "left"][-n_test_side:]
    if min(len(img_left), len(img_right)) < n_test_side:
        raise ValueError("patient pool too small for the test set")
    test = img_left + img_right
    held = set(test)
    return [i for i in ok if i not in held][:n_train], test


def render(
    f: Finding, ids: list[int], size: int = 64, seed: int = SEED, counterfactual: bool = False
) -> Split:
    """Render and preprocess patients (the library's preprocessing, DataConfig defaults).

    ``counterfactual=True`` draws each radiograph again with the finding removed from the patient (same
    random stream: the same patient, exposure and other findings; only the finding and the random draws
    after it change), labelled "no abnormality". Training on both versions of every patient leaves the
    finding itself as the only evidence: no correlated finding can stand in for it.
    """
    opts = PreprocessOptions(image_size=size, ecg_rate=100, ecg_seconds=10.0)
    imgs, ecgs, raw, yx, ye, boxes, reports = [], [], [], [], [], [], []
    for i in ids:
        s = render_patient(seed, i, size)
        image, box, label = s.image, s.boxes[f.box], 1
        if counterfactual:
            p = dataclasses.replace(s.patient, **f.remove)
            image, _ = render_xray(p, patient_rng(seed, i, "xray"), size)
            box, label = None, 0
        imgs.append(image)
        e, _ = preprocess_ecg(s.ecg, 500, opts)
        ecgs.append(normalize_leads(e.astype(np.float16).astype(np.float32), "zscore"))
        raw.append(s.ecg)
        yx.append(label)
        ye.append(ECG_PROMPTS.index(RHYTHMS[s.patient.rhythm]))
        boxes.append(box)
        reports.append(s.ecg_report)
    images = np.stack(imgs)
    x = (torch.from_numpy(images).float() / 255.0 - 0.499) / 0.293
    return Split(list(ids), x[:, None], torch.from_numpy(np.stack(ecgs)), np.stack(raw), images,
                 torch.tensor(yx), torch.tensor(ye), boxes, reports)  # fmt: skip


def concat(a: Split, b: Split) -> Split:
    """Two splits as one (rows of ``a`` then ``b``)."""
    cat = lambda u, v: torch.cat([u, v]) if torch.is_tensor(u) else np.concatenate([u, v])  # noqa: E731
    return Split(a.ids + b.ids, cat(a.xray, b.xray), cat(a.ecg, b.ecg), cat(a.ecg_mv, b.ecg_mv),
                 cat(a.images, b.images), cat(a.y_xray, b.y_xray), cat(a.y_ecg, b.y_ecg), a.boxes + b.boxes,
                 a.ecg_reports + b.ecg_reports)  # fmt: skip


def build(seed: int = 0):
    """A fresh tiny model (random weights) of the architecture above."""
    torch.manual_seed(seed)
    return create_model("tiny", **ARCH)


def train(model, data: Split, prompts: tuple[str, str], xray_steps: int = 500, ecg_steps: int = 150,
          batch: int = 32, lr: float = 3e-3, seed: int = 0) -> dict:  # fmt: skip
    """Train ``model`` in place (X-ray labels index ``prompts``); returns the last losses. Deterministic
    for a seed (one thread)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # frozen text backbone: prompt features once, the text head is trained
        fx = model.text["text"].encode(list(prompts))
        fe = model.text["text"].encode(list(ECG_PROMPTS))
    params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("text.")]
    opt = torch.optim.AdamW(params, lr, weight_decay=0.01)
    total = max(xray_steps, ecg_steps)
    warmup = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, cosine decay to 0
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / total)))
    )
    model.train()
    losses = {}
    for step in range(total):
        scale = model.temperature_scale()
        loss = 0.0
        for name, steps, inputs, labels, feats, enc in (
            ("xray", xray_steps, data.xray, data.y_xray, fx, model.encode_xray),
            ("ecg", ecg_steps, data.ecg, data.y_ecg, fe, model.encode_ecg),
        ):
            if step >= steps:
                continue
            b = torch.randint(0, len(labels), (batch,), generator=g)
            t = F.normalize(model.heads["text"](feats), dim=-1)
            term = F.cross_entropy(scale * enc(inputs[b]) @ t.T, labels[b])
            losses[name] = float(term.detach())
            loss = loss + term
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return losses


def trained_and_random(finding: str = "effusion", n_train: int = 200, n_test_side: int = 32,
                       xray_steps: int = 800, ecg_steps: int = 150, seed: int = 0, trained=None):  # fmt: skip
    """``(trained model, random model with the same initial weights, test Split, its counterfactuals)``.

    Trained on ``n_train`` patients showing ``finding`` and the same patients without it (one thread);
    ``trained``: a model trained so before (e.g. loaded from disk), used instead of training again."""
    f = FINDINGS[finding]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_ids, test_ids = select(f, n_train, n_test_side)
        model = build(seed)
        random_model = copy.deepcopy(model).eval()
        if trained is None:
            data = concat(render(f, train_ids), render(f, train_ids, counterfactual=True))
            train(model, data, prompts(f), xray_steps, ecg_steps, seed=seed)
        else:
            model = trained
        return model.eval(), random_model, render(f, test_ids), render(f, test_ids, counterfactual=True)
    finally:
        torch.set_num_threads(threads)


def prompts(f: Finding) -> tuple[str, str]:
    """The X-ray prompt bank: label 0 (no finding), label 1 (the finding)."""
    return (NO_FINDING, f.prompt)


def accuracy(model, data: Split, f: Finding) -> dict[str, float]:
    """Zero-shot accuracy on the prompt banks (how well the tiny model learnt its task)."""
    with torch.no_grad():
        tx = model.encode_text(list(prompts(f)), kind="xray_report")
        te = model.encode_text(list(ECG_PROMPTS), kind="ecg_report")
        ax = (model.encode_xray(data.xray) @ tx.T).argmax(1) == data.y_xray
        ae = (model.encode_ecg(data.ecg) @ te.T).argmax(1) == data.y_ecg
    return {"xray": float(ax.float().mean()), "ecg": float(ae.float().mean())}


def side_half(box) -> tuple[float, float, float, float]:
    """The image half (as a box in image fractions) that holds the centre of ``box``."""
    cx = (float(box[0]) + float(box[2])) / 2
    return (0.0, 0.0, 0.5, 1.0) if cx < 0.5 else (0.5, 0.0, 1.0, 1.0)
