"""The demo: the whole method on the embedded synthetic cohort, ending in an HTML report.

    from moreclip.demo import run_demo
    summary = run_demo("demo", n=2500, minutes=5, seed=0)     # what `moreclip demo` runs

See :mod:`moreclip.demo.pipeline` for the stages and :mod:`moreclip.demo.headline` for the quality bar.
"""

from moreclip.demo.headline import QUALITY_BAR, check_bar, format_headline, headline
from moreclip.demo.pipeline import DemoSettings, run_demo, training_config

__all__ = [
    "QUALITY_BAR",
    "DemoSettings",
    "check_bar",
    "format_headline",
    "headline",
    "run_demo",
    "training_config",
]
