"""The demo's headline numbers, the quality bar they are held to, and the table printed at the end.

:func:`headline` reads the evaluation records (:func:`moreclip.demo.evaluate.evaluate_all`) into a flat
dict; :func:`check_bar` says, per threshold of :data:`QUALITY_BAR`, whether it holds;
:func:`format_headline` is the console table (also used by ``benchmarks/demo_quality.py``).
"""

from __future__ import annotations

from typing import Any

#: name -> (metric key of :func:`headline`, minimum, what it means)
QUALITY_BAR: dict[str, tuple[str, float, str]] = {
    "zeroshot_xray": ("zeroshot/synthetic-xray/auroc", 0.90, "zero-shot macro AUROC, X-ray findings"),
    "zeroshot_ecg": ("zeroshot/synthetic-ecg/auroc", 0.90, "zero-shot macro AUROC, ECG findings"),
    "recall5_xray": ("retrieval/xray->xray_report/recall@5", 0.50, "X-ray -> X-ray report Recall@5"),
    "recall5_ecg": ("retrieval/ecg->ecg_report/recall@5", 0.50, "ECG -> ECG report Recall@5"),
    "probe_gain_xray": ("probe_gain/synthetic-xray", 0.05, "probe macro AUROC gain over random init, X-ray"),
    "probe_gain_ecg": ("probe_gain/synthetic-ecg", 0.05, "probe macro AUROC gain over random init, ECG"),
}
#: the retrieval pool the bar is defined on (held-out test samples per query)
BAR_POOL = 500
#: the label fraction at which the probe gain is measured
GAIN_FRACTION = "0.1"


def _value(entry: dict | None) -> float | None:
    if not entry:
        return None
    return entry.get("value", entry.get("mean"))


def headline(records: dict) -> dict[str, Any]:
    """Flat headline metrics from the records of :func:`~moreclip.demo.evaluate.evaluate_all`.

    Keys: ``zeroshot/<task>/auroc`` (+ ``_ci``), ``probe/<task>/<fraction>`` and ``probe_random/...``
    (mean macro AUROC over seeds), ``probe_gain/<task>`` (at :data:`GAIN_FRACTION`),
    ``retrieval/<a->b>/recall@K`` (+ ``_ci``) for every direction, ``retrieval/pool`` (candidates).
    """
    out: dict[str, Any] = {}
    for task, rec in records["zeroshot"].items():
        m = rec["results"]["metrics"]["macro"]["auroc"]
        out[f"zeroshot/{task}/auroc"] = m["value"]
        out[f"zeroshot/{task}/auroc_ci"] = m.get("ci")
        out[f"zeroshot/{task}/n"] = rec["results"]["n"]
    for kind in ("probe", "probe_random"):
        for task, rec in records[kind].items():
            for f, s in rec["results"]["summary"].items():
                out[f"{kind}/{task}/{f}"] = _value(s.get("macro", {}).get("auroc"))
    for task in records["probe"]:
        a = out.get(f"probe/{task}/{GAIN_FRACTION}")
        b = out.get(f"probe_random/{task}/{GAIN_FRACTION}")
        out[f"probe_gain/{task}"] = None if a is None or b is None else a - b
    ret = records["retrieval"]["results"]
    cands = []
    for pair in ret["metrics"].values():
        for direction, m in pair.items():
            for k in ret["ks"]:
                out[f"retrieval/{direction}/recall@{k}"] = m[f"recall@{k}"]["value"]
                out[f"retrieval/{direction}/recall@{k}_ci"] = m[f"recall@{k}"].get("ci")
            out[f"retrieval/{direction}/candidates"] = m["n_candidates"]
            cands.append(m["n_candidates"])
    out["retrieval/pool"] = ret["pool"]
    return out


def check_bar(h: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per threshold of :data:`QUALITY_BAR`: ``{"metric", "value", "min", "pass", "what"}``.

    A retrieval threshold only passes when its direction was ranked among :data:`BAR_POOL` candidates.
    """
    out = {}
    for name, (key, low, what) in QUALITY_BAR.items():
        v = h.get(key)
        ok = v is not None and v >= low
        if key.startswith("retrieval/"):
            direction = key.split("/")[1]
            ok = ok and h.get(f"retrieval/{direction}/candidates") == BAR_POOL
        out[name] = {"metric": key, "value": v, "min": low, "pass": bool(ok), "what": what}
    return out


def _f(v: float | None, d: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{d}f}"


def _ci(ci) -> str:
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else ""


def format_headline(h: dict[str, Any]) -> str:
    """The console table: zero-shot AUROC with CI, Recall@5 per direction, probe vs random init."""
    rows: list[tuple[str, str, str]] = []
    for task, name in (("synthetic-xray", "X-ray findings"), ("synthetic-ecg", "ECG findings")):
        v = h.get(f"zeroshot/{task}/auroc")
        rows.append(
            (f"zero-shot macro AUROC, {name}", _f(v) + _ci(h.get(f"zeroshot/{task}/auroc_ci")), "0.500")
        )
    for direction in ("xray->xray_report", "xray_report->xray", "ecg->ecg_report", "ecg_report->ecg",
                      "xray->ecg"):  # fmt: skip
        v = h.get(f"retrieval/{direction}/recall@5")
        if v is None:
            continue
        n = h.get(f"retrieval/{direction}/candidates") or 0
        label = f"Recall@5 {direction.replace('->', ' -> ')} (among {n})"
        rows.append(
            (label, _f(v) + _ci(h.get(f"retrieval/{direction}/recall@5_ci")), _f(min(1.0, 5 / max(n, 1))))
        )
    for task, name in (("synthetic-xray", "X-ray"), ("synthetic-ecg", "ECG")):
        a, b = h.get(f"probe/{task}/{GAIN_FRACTION}"), h.get(f"probe_random/{task}/{GAIN_FRACTION}")
        pct = f"{float(GAIN_FRACTION):.0%}"
        rows.append((f"linear probe AUROC, {name} ({pct} labels): demo vs random init", f"{_f(a)} vs {_f(b)}",
                     "0.500"))  # fmt: skip
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows + [("", "value [95% CI]", "")])
    lines = [
        f"{'metric (held-out test split)':<{w0}}  {'value [95% CI]':<{w1}}  chance",
        "-" * (w0 + w1 + 10),
    ]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    return "\n".join(lines)
