"""``moreclip info MODEL``: a model's configuration and its trainable / frozen parameters per encoder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        nargs="?",
        help="registered model name (see --list), model config YAML, or checkpoint directory",
    )
    p.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the model config, e.g. -o xray.depth=2 (repeatable)",
    )
    p.add_argument("--config", action="store_true", help="also print the full model config (YAML)")
    p.add_argument("--json", metavar="OUT", help="also write the description as JSON")
    p.add_argument("--list", action="store_true", help="list the registered model names and exit")


def run(args: argparse.Namespace) -> int:
    from moreclip.models.factory import format_parameters, list_models, model_info

    if args.list:
        print("\n".join(list_models()))
        return 0
    if not args.model:
        from moreclip.errors import ConfigError

        raise ConfigError("give a model name, config YAML or checkpoint directory (or --list)")
    info = model_info(args.model, args.override)
    kind = "checkpoint" if info["checkpoint"] else "config"
    print(f"model: {info['name']}  ({kind} {info['source']})")
    cfg = info["config"]
    print(
        f"embedding dim {cfg['embed_dim']}, head {cfg['head']}; X-ray {cfg['xray']['model_name']} "
        f"@ {cfg['xray']['img_size']} px; ECG {cfg['ecg']['patch_mode']} patches of {cfg['ecg']['patch_size']} "
        f"@ {cfg['ecg']['sample_rate']} Hz; text {cfg['text']['model_name']} (LoRA {cfg['text']['lora']})"
    )
    print(format_parameters(info["parameters"]))
    if args.config:
        import yaml

        print(yaml.safe_dump({"model": cfg}, sort_keys=False).rstrip())
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(info, indent=2))
    return 0
