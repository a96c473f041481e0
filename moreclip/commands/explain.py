"""``moreclip explain``: heat maps of a radiograph, attribution over a 12-lead ECG, and report word importance.

    moreclip explain --model runs/demo/checkpoint --xray cxr.png --text "left pleural effusion" --out xray.png
    moreclip explain --model runs/demo/checkpoint --ecg ecg/rec001 --text "sinus tachycardia" --out ecg.png
    moreclip explain --model runs/demo/checkpoint --xray cxr.png --report-file report.txt --out xray.png
        # also writes xray.html: the report's words highlighted by their weight in the match

The input is preprocessed like the model's training data (sizes from the model, the rest from the
checkpoint's ``data:`` section). Reports are read from the command line or a file and never printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", required=True, help="checkpoint directory (or a registered model name: random weights)"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--xray", metavar="IMG", help="radiograph file (PNG / JPEG)")
    src.add_argument("--ecg", metavar="RECORD", help="12-lead WFDB record (path with or without .hea)")
    p.add_argument(
        "--text", metavar="PROMPT", help="prompt the text-conditioned maps explain, e.g. 'pleural effusion'"
    )
    p.add_argument(
        "--method",
        default="both",
        help="rollout, text, both (default: rollout, plus text with --text), all (X-ray: adds gradient), "
        "or a comma-separated list",
    )
    rep = p.add_mutually_exclusive_group()
    rep.add_argument(
        "--report", metavar="TEXT", help="a report to explain against the input (word importance)"
    )
    rep.add_argument("--report-file", metavar="FILE", help="read that report from a UTF-8 text file")
    p.add_argument("--text-method", choices=["occlusion", "gradient"], default="occlusion",
                   help="word importance: leave-one-word-out (default) or gradient x input")  # fmt: skip
    p.add_argument("--out", required=True, metavar="PNG", help="figure to write")
    p.add_argument("--html", metavar="HTML", help="highlighted report (default: --out with .html)")
    p.add_argument("--maps", metavar="NPZ", help="also save the raw maps (and word scores) as .npz")
    p.add_argument(
        "--layout", choices=["3x4", "12x1"], default="3x4", help="ECG layout (default 3x4 + rhythm strip)"
    )
    p.add_argument("--title", help="figure title (default: the input file name)")
    p.add_argument("--dpi", type=int, default=100, help="PNG resolution (default 100)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from moreclip.errors import ConfigError
    from moreclip.eval.data import data_config_for
    from moreclip.explain import (
        ecg_input,
        ecg_maps,
        render_ecg,
        render_text_html,
        render_xray,
        save_figure,
        text_importance,
        xray_input,
        xray_maps,
    )
    from moreclip.explain.render import require_matplotlib, save_bytes
    from moreclip.models.checkpoint import is_checkpoint
    from moreclip.models.factory import create_model

    require_matplotlib()
    report = args.report
    if args.report_file:
        try:
            report = Path(args.report_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{args.report_file}: cannot read the report ({e})") from None
    if report is not None and not report.strip():
        raise ConfigError("the report to explain is empty")
    model = create_model(args.model).eval()
    data_cfg = data_config_for(model, checkpoint=args.model if is_checkpoint(args.model) else None)
    try:
        if args.xray:
            inp = xray_input(args.xray, model, data_cfg)
            maps = xray_maps(model, inp, args.text, args.method, data_cfg)
        else:
            inp = ecg_input(args.ecg, model, data_cfg)
            maps = ecg_maps(model, inp, args.text, args.method, data_cfg)
    except ValueError as e:  # an unknown method, or a text method without --text
        raise ConfigError(f"--method {args.method}: {e}") from None
    names = [k for k in ("rollout", "text", "gradient") if k in maps]
    title = args.title or Path(args.xray or args.ecg).name
    if args.xray:
        fig = render_xray(maps["image"], {k: maps[k] for k in names}, prompt=args.text, title=title)
    else:
        fig = render_ecg(maps["signal"], maps["fs"], {k: maps[k] for k in names}, prompt=args.text,
                         title=title, layout=args.layout)  # fmt: skip
    out = save_figure(fig, args.out, dpi=args.dpi)
    msg = f"wrote {out} ({', '.join(names)})"
    if "similarity" in maps:
        msg += f"; cosine similarity to the prompt {maps['similarity']:.3f}"
    print(msg)
    arrays = {k: maps[k] for k in names}
    if report is not None:
        query = {"xray": inp} if args.xray else {"ecg": inp}
        scores = text_importance(model, report, method=args.text_method, data_cfg=data_cfg, **query)
        what = "radiograph" if args.xray else "ECG"
        html = render_text_html(
            scores, title=f"Report vs {title}", note=f"word importance for the match to the {what}"
        )
        html_path = save_bytes(html, args.html or Path(args.out).with_suffix(".html"))
        print(f"wrote {html_path} (importance of {len(scores)} words)")
        arrays["word_scores"] = np.array([s for _, s in scores], dtype=np.float32)
    if args.maps:
        import io

        buf = io.BytesIO()
        np.savez(buf, **arrays)
        print(f"wrote {save_bytes(buf.getvalue(), args.maps)} ({', '.join(arrays)})")
    return 0
