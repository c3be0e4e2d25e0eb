"""`faceveil methods` and `faceveil detectors`: what is registered, with parameters and defaults."""
from __future__ import annotations

import json
import textwrap

from .common import default_settings


def register(sub) -> None:
    m = sub.add_parser("methods", help="list anonymization methods and their parameters")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.set_defaults(func=cmd_list, registry="methods")
    t = sub.add_parser("detectors", help="list detectors and their parameters")
    t.add_argument("--json", action="store_true", help="machine-readable output")
    t.set_defaults(func=cmd_list, registry="detectors")


def cmd_list(args) -> int:
    if args.registry == "methods":
        from ..anonymize import METHODS as reg
    else:
        from ..detect import DETECTORS as reg
    items = reg.describe()
    if args.registry == "methods":  # its random draws follow --seed (eval quality --seeds measures its diversity)
        from ..anonymize.weak import default_weakness

        for item in items:
            item["seeded"] = reg.get(item["name"]).uses_rng
            item["weak"] = default_weakness(reg.get(item["name"])) is not None  # faces stay recognisable
    if args.json:
        print(json.dumps(items, indent=1, default=str))
        return 0
    for item in items:
        print(f"{item['name']}: {item['summary']}" + (" Seeded (--seed)." if item.get("seeded") else "")
              + (" Weak privacy: faces stay recognisable at its defaults." if item.get("weak") else ""))
        for p in item["params"]:
            d = p["default"]
            if isinstance(d, tuple):  # written the way --dp/-p take it: "0.6,0.9"; "" is none
                default = repr(",".join(map(str, d)))
            else:
                default = json.dumps(d) if not isinstance(d, str) else repr(d)
            print(f"    {p['name']} ({p['type']}, default {default})")
            print(textwrap.indent(textwrap.fill(p["help"], 70), " " * 8))
        print()
    if args.registry == "methods":
        reg = default_settings()["region"]
        print(f"Region options for every method: --shape ellipse|box (default {reg['shape']}), --mask-scale "
              f"(default {reg['mask_scale']}), --feather (default {reg['feather']:g}).")
        print("Set a parameter with -p NAME=VALUE, e.g. faceveil anonymize in/ -o out/ -m pixelate -p cells=16")
    else:
        from ..detect.presets import DEFAULT_PRESET, PRESETS

        d = default_settings()
        presets = ", ".join(f"--detect {k}" for k in PRESETS)
        print(f"The CLI's default is {d['detector']} with the --detect {DEFAULT_PRESET} preset's parameters "
              f"({presets}; `faceveil detect --help`), which differ from the defaults listed above.")
        print("Choose another with --detector NAME (its own defaults); set a parameter with --dp NAME=VALUE.")
    return 0
