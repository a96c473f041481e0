from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import scipy.signal
from PIL import Image

from moreclip.config import DataConfig
from moreclip.data.ecg import write_ecg
from moreclip.data.preprocess import (
    PreprocessOptions,
    bandpass_ecg,
    fit_geometry,
    load_ecg,
    load_xray,
    normalize_leads,
    preprocess_xray,
    remove_baseline,
    resample_ecg,
)
from moreclip.errors import RecordError


def _sines(fs: float, seconds: float, freqs, amps) -> np.ndarray:
    t = np.arange(int(round(fs * seconds))) / fs
    return np.stack([a * np.sin(2 * np.pi * f * t) for f, a in zip(freqs, amps)]).astype(np.float32)


def _peak(x: np.ndarray, fs: float) -> tuple[float, float]:
    """Frequency of the largest FFT bin and its amplitude (a sine of amplitude A gives A)."""
    spec = np.abs(np.fft.rfft(x)) * 2 / len(x)
    k = int(np.argmax(spec[1:])) + 1
    return k * fs / len(x), float(spec[k])


def test_options_defaults_follow_data_config():
    opts = PreprocessOptions.from_config()
    cfg = DataConfig()
    for f in dataclasses.fields(PreprocessOptions):
        assert getattr(opts, f.name) == getattr(cfg, f.name) == f.default, f.name
    assert PreprocessOptions.from_config(ecg_rate=500).ecg_length == 5000


def test_resample_500_to_100_keeps_frequency_and_amplitude():
    freqs, amps = [1.0, 5.0, 7.3, 20.0, 35.0], [0.5, 1.3, 2.0, 0.8, 1.0]
    x = _sines(500, 10, freqs, amps)
    y = resample_ecg(x, 500, 100)
    assert y.shape == (5, 1000) and y.dtype == np.float32
    # the independent reference: scipy's polyphase resampler with the same 1:5 ratio
    np.testing.assert_allclose(y, scipy.signal.resample_poly(x.astype(np.float64), 1, 5, axis=-1), atol=1e-5)
    expected = _sines(100, 10, freqs, amps)
    for lead, (f, a) in enumerate(zip(freqs, amps)):
        pf, pa = _peak(y[lead], 100)
        assert abs(pf - f) <= 0.1 and abs(pa - _peak(expected[lead], 100)[1]) < 0.01 * a
        # sample by sample, away from the filter's edge transients, it is the sine at the new times
        np.testing.assert_allclose(y[lead, 50:-50], expected[lead, 50:-50], atol=0.01 * a)


def test_resample_non_integer_ratio_360_to_100():
    x = _sines(360, 10, [3.0], [1.0])
    y = resample_ecg(x, 360, 100)
    assert y.shape == (1, 1000)
    np.testing.assert_allclose(y[0, 50:-50], _sines(100, 10, [3.0], [1.0])[0, 50:-50], atol=0.01)


def test_median_baseline_removal_removes_slow_drift_and_keeps_beats():
    fs, n = 100, 1000
    t = np.arange(n) / fs
    beats = np.zeros(n)
    for c in np.arange(0.4, 10, 0.8):  # 75 bpm of narrow "QRS" pulses, 1.5 mV
        beats += 1.5 * np.exp(-0.5 * ((t - c) / 0.015) ** 2)
    drift = 0.8 * np.sin(2 * np.pi * 0.15 * t) + 0.4 + 0.05 * t
    x = np.stack([beats + drift, beats - drift]).astype(np.float32)
    y = remove_baseline(x, fs)
    inner = slice(100, -100)

    def slow(v):  # 1 s running median: the baseline the beats sit on
        return scipy.signal.medfilt(v, 101)[inner]

    assert np.abs(slow(x[0])).max() > 0.5  # the drift is really there
    for lead in range(2):
        assert np.abs(slow(y[lead])).max() < 0.05
        peaks = y[lead][np.isin(np.arange(n), np.round(np.arange(0.4, 10, 0.8) * fs).astype(int))]
        np.testing.assert_allclose(peaks[1:-1], 1.5, atol=0.1)
    # independent reference: MoRE's two scipy.signal.medfilt passes (0.2 s, then 0.6 s), away from edges
    ref = x[0] - scipy.signal.medfilt(scipy.signal.medfilt(x[0].astype(np.float64), 21), 61)
    np.testing.assert_allclose(y[0, 60:-60], ref[60:-60], atol=1e-5)


def test_bandpass_removes_drift_and_mains_but_keeps_qrs_band():
    fs = 500
    x = _sines(fs, 10, [0.05, 10.0, 180.0], [1.0, 1.0, 1.0])
    y = bandpass_ecg(x, fs)
    inner = slice(1000, -1000)
    assert np.abs(y[0, inner]).max() < 0.1  # 0.05 Hz drift, under the 0.5 Hz edge
    assert abs(np.abs(y[1, inner]).max() - 1.0) < 0.03  # 10 Hz passes
    assert np.abs(y[2, inner]).max() < 0.4  # 180 Hz, above the 100 Hz edge
    # at 100 Hz sampling the upper edge is above Nyquist: a high-pass only, nothing breaks
    assert np.isfinite(bandpass_ecg(_sines(100, 10, [10.0], [1.0]), 100)).all()


def test_minmax_lands_in_minus_one_one_and_zscore_standardises():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 12, 500)) * rng.uniform(0.1, 5, (3, 12, 1)) + 7).astype(np.float32)
    x[1, 4] = 2.5  # a flat lead must not become NaN
    mm = normalize_leads(x.copy(), "minmax")
    assert np.isfinite(mm).all() and mm.min() >= -1 - 1e-6 and mm.max() <= 1 + 1e-6
    live = np.ones((3, 12), bool)
    live[1, 4] = False
    np.testing.assert_allclose(mm.min(-1)[live], -1, atol=1e-5)
    np.testing.assert_allclose(mm.max(-1)[live], 1, atol=1e-5)
    # MoRE's formula, written out
    lo, hi = x[live].min(-1, keepdims=True), x[live].max(-1, keepdims=True)
    np.testing.assert_allclose(mm[live], (2 * (x[live] - lo) / (hi - lo)) - 1, atol=1e-4)
    z = normalize_leads(x.copy(), "zscore")
    np.testing.assert_allclose(z.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(-1)[live], 1, atol=1e-3)
    assert np.isfinite(z).all()


def test_nan_samples_are_zeroed_and_counted_or_make_the_record_bad(tmp_path):
    sig = _sines(500, 10, [5.0] * 12, [1.0] * 12)
    sig[3, 100:110] = np.nan
    write_ecg(tmp_path / "few", sig, 500)
    opts = PreprocessOptions.from_config(ecg_baseline="none")
    y, n_nan = load_ecg(tmp_path / "few", opts)
    assert n_nan == 10 and y.shape == (12, 1000) and np.isfinite(y).all()
    sig[5, :] = np.nan  # a whole lead: 8.4 % of the samples, over the 5 % default
    write_ecg(tmp_path / "many", sig, 500)
    with pytest.raises(RecordError, match=r"many\.hea: 5010 of 60000 samples are NaN"):
        load_ecg(tmp_path / "many", opts)
    y, n_nan = load_ecg(tmp_path / "many", dataclasses.replace(opts, ecg_nan_max=0.1))
    assert n_nan == 5010 and np.isfinite(y).all()


def test_wrong_duration_is_a_record_error(tmp_path):
    write_ecg(tmp_path / "short", _sines(500, 8, [5.0] * 12, [1.0] * 12), 500)
    with pytest.raises(RecordError, match=r"short\.hea: 4000 samples .* expected 10 s"):
        load_ecg(tmp_path / "short", PreprocessOptions.from_config())


@pytest.mark.parametrize(
    ("h", "w", "fit", "expected"),
    [
        (100, 200, "pad", (32, 64, 16, 0)),
        (200, 100, "pad", (64, 32, 0, 16)),
        (90, 300, "pad", (19, 64, 22, 0)),
        (100, 300, "crop", (64, 192, 0, 64)),
        (300, 100, "crop", (192, 64, 64, 0)),
        (100, 300, "stretch", (64, 64, 0, 0)),
    ],
)
def test_fit_geometry(h, w, fit, expected):
    assert fit_geometry(h, w, 64, fit) == expected


def test_pad_and_crop_put_the_content_where_the_geometry_says():
    opts = PreprocessOptions.from_config(image_size=64)
    wide = np.full((100, 200), 255, np.uint8)
    out = preprocess_xray(wide, opts)
    assert out.shape == (64, 64) and out.dtype == np.uint8
    assert (out[:16] == 0).all() and (out[48:] == 0).all() and (out[16:48] == 255).all()
    # crop: a 100 x 300 image, dark outer thirds and a bright centre third -> all bright
    three = np.zeros((100, 300), np.uint8)
    three[:, 100:200] = 200
    out = preprocess_xray(three, dataclasses.replace(opts, xray_fit="crop"))
    assert out.shape == (64, 64) and (out[:, 1:-1] == 200).all()
    # stretch: the aspect ratio is lost, the left half stays the left half
    half = np.zeros((100, 300), np.uint8)
    half[:, :150] = 255
    out = preprocess_xray(half, dataclasses.replace(opts, xray_fit="stretch"))
    assert (out[:, :31] == 255).all() and (out[:, 33:] == 0).all()


def test_clahe_matches_opencv():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:128, 0:128]
    low = (100 + 20 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 3, (128, 128))).clip(0, 255)
    low = low.astype(np.uint8)
    opts = PreprocessOptions.from_config(image_size=128, clahe=True, xray_fit="stretch")
    out = preprocess_xray(low, opts)
    ref = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(low)
    np.testing.assert_array_equal(out, ref)
    assert out.std() > 1.5 * low.std()  # contrast really went up
    # pad: CLAHE on the resized content (OpenCV area resize), then the black margins
    padded = preprocess_xray(low[:, :64], dataclasses.replace(opts, xray_fit="pad", image_size=64))
    content = cv2.resize(low[:, :64], (32, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(
        padded[:, 16:48], cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(content)
    )
    assert (padded[:, :16] == 0).all() and (padded[:, 48:] == 0).all()


def test_load_xray_reads_16_bit_png_and_rejects_garbage(tmp_path):
    ramp = (np.arange(200 * 100).reshape(100, 200) * 3).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "a.png")
    out = load_xray(tmp_path / "a.png", PreprocessOptions.from_config(image_size=32))
    assert out.shape == (32, 32) and out[8:24].max() > 200 and (out[:8] == 0).all()
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(RecordError, match=r"bad\.png"):
        load_xray(tmp_path / "bad.png", PreprocessOptions.from_config())
