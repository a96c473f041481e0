"""The demo end to end at a tiny size: every stage runs, the report renders in headless Chromium with every
image loaded, a second run skips what is done, and Ctrl-C during training resumes instead of restarting."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moreclip.cli import main

TINY = ["--n", "120", "--minutes", "0.1", "--patients", "2", "--workers", "2", "--no-progress"]
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const res = Array.from(document.images).map(i => (i.complete && i.naturalWidth > 0) ? 1 : 0);
  const pre = document.createElement('pre'); pre.id = 'imgcheck';
  pre.textContent = 'IMGCHECK ' + res.length + ' ' + res.reduce((a, b) => a + b, 0) + ' END';
  document.body.appendChild(pre);
});
</script>"""


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; installed with apt-get (as root, once per machine, under a lock) when absent."""
    found = _find_chromium()
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    with open("/tmp/moreclip-chromium-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one xdist worker installs, the others wait for it
        found = _find_chromium()
        if found is None:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            try:
                for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
                    subprocess.run(cmd, env=env, check=True, timeout=600, capture_output=True)
            except (subprocess.SubprocessError, OSError) as e:
                pytest.skip(f"chromium is not installed and apt-get could not install it ({e})")
            found = _find_chromium()
    if found is None:
        pytest.skip("chromium could not be installed")
    return found


def render_images(chrome: str, html: Path, tmp: Path) -> tuple[int, int]:
    """(images, images loaded) of ``html`` rendered by headless Chromium (a copy with a checking script)."""
    page = tmp / "check.html"
    page.write_text(
        html.read_text(encoding="utf-8").replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8"
    )
    cmd = [chrome, *CHROME_FLAGS, f"--user-data-dir={tmp / 'chrome-profile'}", "--virtual-time-budget=20000",
           "--dump-dom", page.as_uri()]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    m = re.search(r"IMGCHECK (\d+) (\d+) END", out.stdout)
    assert m, f"chromium did not run the check: {out.stderr[-2000:]}"
    return int(m.group(1)), int(m.group(2))


def screenshot(chrome: str, html: Path, png: Path, tmp: Path) -> None:
    cmd = [chrome, *CHROME_FLAGS, f"--user-data-dir={tmp / 'chrome-shot'}", "--window-size=1200,1600",
           f"--screenshot={png}", html.as_uri()]  # fmt: skip
    subprocess.run(cmd, capture_output=True, timeout=180)


@pytest.mark.slow
def test_tiny_demo_runs_every_stage_and_the_report_renders(tmp_path, capsys, chromium):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    for stage in (
        "cohort",
        "decode once",
        "pre-train",
        "zero-shot",
        "vector index",
        "explanations",
        "HTML report",
    ):
        assert stage in printed
    assert "zero-shot macro AUROC, X-ray findings" in printed and "Recall@5 xray -> xray_report" in printed
    assert f"report: {(out / 'report.html').resolve()}" in printed
    # no report text reaches the console
    import pandas as pd

    df = pd.read_parquet(out / "cohort" / "manifest.parquet")
    for text in df["xray_report"].dropna().tolist() + df["ecg_report"].dropna().tolist():
        assert text not in printed

    # every stage's outputs
    summ = json.loads((out / "run" / "summary.json").read_text())
    steps = json.loads((out / "demo.json").read_text())["train_steps"]
    import yaml

    from moreclip.demo.pipeline import default_config_path

    ref = yaml.safe_load(default_config_path().read_text())["train"]["max_steps"]  # steps for 5 minutes
    assert summ["steps"] == steps == max(1, round(ref * 0.1 / 5))
    for task in ("synthetic-xray", "synthetic-ecg"):
        assert (out / "eval" / f"zeroshot-{task}" / "roc.png").is_file()
        rnd = json.loads((out / "eval" / f"probe-{task}-random" / "metrics.json").read_text())
        assert "random initialisation" in rnd["model"]["source"]
    head = json.loads((out / "eval" / "headline.json").read_text())
    assert set(head["bar"]) == {"zeroshot_xray", "zeroshot_ecg", "recall5_xray", "recall5_ecg", "probe_gain_xray",
                                "probe_gain_ecg"}  # fmt: skip
    assert all(
        0.0 <= head["headline"][f"zeroshot/{t}/auroc"] <= 1.0 for t in ("synthetic-xray", "synthetic-ecg")
    )
    info = json.loads((out / "index" / "index.json").read_text())
    assert info["model"]["checkpoint"] == str((out / "run" / "final").resolve())
    patients = json.loads((out / "explain" / "patients.json").read_text())
    assert len(patients) == 2
    for p in patients:
        for direction, hits in p["neighbours"].items():
            assert len(hits) == 3
            if direction.endswith("->xray") or direction.endswith("->ecg"):  # never itself
                assert p["sample_id"] not in [h["sample_id"] for h in hits]
    cfg_text = (out / "config.yaml").read_text()
    assert f"max_steps: {steps}" in cfg_text and f"output_dir: {out / 'run'}" in cfg_text

    # the report: self-contained, every image decodes in Chromium
    html = (out / "report.html").read_text(encoding="utf-8")
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) >= 2 * 2 + 2 * 2 + 1 + 2 + 2 + 1  # patients' figures, ROC, probe, recall, training
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    n, loaded = render_images(chromium, out / "report.html", tmp_path)
    assert n == len(srcs) and loaded == n
    shot = tmp_path / "shot.png"
    screenshot(chromium, out / "report.html", shot, tmp_path)
    from PIL import Image

    with Image.open(shot) as im:
        grey = im.convert("L")
        assert grey.size == (1200, 1600) and grey.getextrema()[0] < 100  # not a blank page

    # a second run skips every finished stage and changes nothing
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "cohort" / "manifest.parquet", out / "run" / "final" / "model.safetensors",
                                                 out / "eval" / "headline.json", out / "index" / "index.json")}  # fmt: skip
    assert main(["demo", "--out", str(out), *TINY]) == 0
    again = capsys.readouterr().out
    assert again.count("done before") == 6
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def _wait_for(path_glob: Path, proc: subprocess.Popen, timeout: float) -> list[Path]:
    t0 = time.time()
    while time.time() - t0 < timeout:
        found = sorted(path_glob.parent.glob(path_glob.name)) if path_glob.parent.is_dir() else []
        if found:
            return found
        assert proc.poll() is None, f"the demo ended before {path_glob}: {proc.communicate()[0][-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"{path_glob} did not appear within {timeout} s")


@pytest.mark.slow
def test_ctrl_c_during_training_then_rerun_continues(tmp_path):
    out = tmp_path / "demo"
    # a fixed length, well inside the time cap of --minutes 2 (4 min) even on a loaded machine
    args = [sys.executable, "-m", "moreclip", "demo", "--out", str(out), "--n", "120", "--minutes", "2",
            "--patients", "1", "--workers", "1", "--no-progress", "--set", "train.ckpt_every=10",
            "--set", "train.max_steps=120"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        _wait_for(out / "run" / "checkpoints" / "step_*", proc, 240)
        proc.send_signal(signal.SIGINT)
        log = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, log[-3000:]
    assert "run the same command again" in log
    assert not (out / "run" / "final").exists()
    steps_done = max(int(p.name.split("_")[1]) for p in (out / "run" / "checkpoints").glob("step_*"))
    total = json.loads((out / "demo.json").read_text())["train_steps"]
    assert 10 <= steps_done < total
    kept = {p: p.stat().st_mtime_ns for p in (out / "cohort" / "manifest.parquet", out / "cache" / "meta.json",
                                              out / "cache" / "xray.npy")}  # fmt: skip

    rerun = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert (
        "[1/7] synthetic cohort" in rerun.stdout and rerun.stdout.count("done before") == 2
    )  # cohort, cache
    assert f"continued from {out / 'run' / 'checkpoints' / f'step_{steps_done:06d}'}" in rerun.stdout
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # cohort and cache not regenerated
    summ = json.loads((out / "run" / "summary.json").read_text())
    assert summ["steps"] == total and summ["steps_this_run"] == total - steps_done
    assert (out / "report.html").is_file()
