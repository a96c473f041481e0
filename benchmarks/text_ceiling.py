"""How far zero-shot classification can go with the demo's text side: the ceiling set by the text tower.

    python benchmarks/text_ceiling.py                          # the demo cohort (2,500 patients, seed 0)
    python benchmarks/text_ceiling.py --manifest M.parquet --task synthetic-ecg --report ecg_report

The demo trains a linear head on a frozen MiniLM (``configs/demo.yaml``). Here the other side of the
contrastive loss is not an image encoder but a *perfect* one: a linear map of the sample's true labels
(every ``synthetic/*`` column). The head is trained with the same symmetric InfoNCE (batch 32, AdamW
5e-4, 1,000 steps) on the train and val reports, and the task is then scored zero-shot on the test
reports exactly as ``moreclip zeroshot`` scores an image (prompt ensembles averaged in the shared space,
positive minus negative similarity). No image model can exceed this with the same text tower, up to
noise: it is the zero-shot AUROC of reports whose partner knows every label. Prints per-label and macro
AUROC and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", help="a synthetic cohort's manifest (default: generate the demo's cohort)")
    p.add_argument("--n", type=int, default=2500, help="patients of the generated cohort")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", default="synthetic-xray")
    p.add_argument("--report", default="xray_report", help="report column scored (xray_report / ecg_report)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(HERE / "out" / "text_ceiling.json"))
    args = p.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import roc_auc_score

    import moreclip
    from moreclip.data.manifest import read_manifest
    from moreclip.data.synthetic import generate_cohort
    from moreclip.eval import load_task

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    if args.manifest:
        manifest = Path(args.manifest)
    else:
        work = Path(tempfile.mkdtemp(prefix="moreclip-ceiling-"))
        manifest = generate_cohort(
            work / "cohort", args.n, args.seed, split=(0.65, 0.1, 0.25), progress=False
        )
    df = read_manifest(manifest).df
    df = df[df[args.report].notna()].reset_index(drop=True)
    cols = [c for c in df.columns if c.startswith("synthetic/") and c != "synthetic/edema"]
    labels = torch.tensor(df[cols].fillna(0).to_numpy(), dtype=torch.float32)
    test = (df["split"] == "test").to_numpy()

    model = moreclip.create_model("tiny", overrides=["text.lora=false"]).eval()
    tower = model.text[model.text_tower(args.report)]

    def backbone(texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([tower.encode(texts[i : i + 64]) for i in range(0, len(texts), 64)])

    t1 = time.time()
    feats = backbone(df[args.report].tolist())
    encode_s = time.time() - t1
    head = torch.nn.Linear(feats.shape[1], 128)
    partner = torch.nn.Linear(labels.shape[1], 128)
    log_scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
    opt = torch.optim.AdamW([*head.parameters(), *partner.parameters(), log_scale], lr=5e-4, weight_decay=0.1)
    train_idx = torch.from_numpy(np.flatnonzero(~test))
    gen = torch.Generator().manual_seed(args.seed)
    for _ in range(args.steps):
        b = train_idx[torch.randperm(len(train_idx), generator=gen)[:32]]
        a = F.normalize(head(feats[b]), dim=-1)
        c = F.normalize(partner(labels[b]), dim=-1)
        logits = log_scale.exp().clamp(max=100) * a @ c.T
        target = torch.arange(len(b))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()

    task = load_task(args.task)
    per_label = {}
    with torch.no_grad():
        reports = F.normalize(head(feats[torch.from_numpy(test)]), dim=-1)
        for lab in task.labels:
            pos = F.normalize(F.normalize(head(backbone(list(lab.positive))), dim=-1).mean(0), dim=0)
            if lab.negative:
                neg = F.normalize(F.normalize(head(backbone(list(lab.negative))), dim=-1).mean(0), dim=0)
                score = (reports @ pos - reports @ neg).numpy()
            else:
                score = (reports @ pos).numpy()
            y = df.loc[test, lab.column].to_numpy(dtype=float)
            ok = ~np.isnan(y)
            per_label[lab.name] = float(roc_auc_score(y[ok], score[ok]))
    macro = float(np.mean(list(per_label.values())))
    result = {
        "benchmark": "text_ceiling", "task": args.task, "report": args.report, "text": "minilm (frozen) + linear head",
        "partner": "linear map of the true labels", "steps": args.steps, "final_loss": loss.item(),
        "n_test": int(test.sum()), "macro_auroc": macro, "auroc": per_label, "encode_s": round(encode_s, 1),
        "wall_s": round(time.time() - t0, 1), "manifest": str(manifest),
    }  # fmt: skip
    print(f"{args.task} from {args.report}: zero-shot macro AUROC ceiling {macro:.3f}")
    for k, v in per_label.items():
        print(f"  {k:<28}{v:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
