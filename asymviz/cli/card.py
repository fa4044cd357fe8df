"""`asymviz card`: the adapter card on the command line.

    asymviz card ADAPTER [--base MODEL] [--init INIT_ADAPTER] [--a-init FAMILY] [--energy 0.9]
                 [--format table|json] [-o FILE]

ADAPTER is a PEFT adapter folder, .safetensors, .zip, legacy .bin, or a run folder (its init/ then gives the
exact drift of A). `--format table` prints the adapter summary (one `key: value` line each) and the module
table; `--format json` prints AdapterCard.to_json(). Imports nothing heavy at module level (--help stays fast).
"""

from __future__ import annotations

import sys
from pathlib import Path

from asymviz.cli.output import progress_bar, quiet_transformers
from asymviz.errors import AsymvizError

CARD_FORMATS = ("table", "json")


def add_card_command(sub) -> None:
    from asymviz.init_null import FAMILIES

    p = sub.add_parser(
        "card",
        help="did the adapter learn, is A still its random init, how much of its rank does it use",
        description="Per module and for the adapter: ‖ΔW‖ and no-update modules; whether A is still a draw of "
        "its init (exact with --init or a run folder, else against 200 seeded draws of the declared init); "
        "stable and energy ranks with a suggested rank_pattern; flags (spike, loud, balanced, orientation).",
    )
    p.add_argument("adapter", help="PEFT adapter folder, .safetensors, .zip, .bin, or a run folder")
    p.add_argument(
        "--base", metavar="MODEL", help="base model for ‖ΔW‖/‖W0‖ (minilm, smollm2, a folder, a hub id)"
    )
    p.add_argument("--init", metavar="INIT_ADAPTER", help="the adapter at step 0 (exact drift of A)")
    p.add_argument("--a-init", choices=FAMILIES, help="init family of A, overriding the declared one")
    p.add_argument(
        "--energy",
        type=float,
        default=0.90,
        help="share of ‖ΔW‖² the suggested rank keeps (default: %(default)s)",
    )
    p.add_argument(
        "--format", choices=CARD_FORMATS, default="table", help="output format (default: %(default)s)"
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(func=_cmd_card)


def add_commands(sub) -> None:
    """The hook asymviz.cli calls for every module in its _COMMAND_MODULES."""
    add_card_command(sub)


def _cmd_card(args) -> int:
    from asymviz.card import adapter_card

    if not 0 < args.energy <= 1:
        raise AsymvizError(f"--energy must be in (0, 1], got {args.energy}")
    base = None
    if args.base:
        quiet_transformers()
        base = args.base
    card = adapter_card(args.adapter, init=args.init, base=base, a_init=args.a_init, energy=args.energy,
                        progress=progress_bar(0, "card"))  # fmt: skip
    for line in card.adapter["problems"]:
        print(f"warning: {line}", file=sys.stderr)
    text = card.to_json() + "\n" if args.format == "json" else format_card(card)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0


def format_card(card) -> str:
    """The card as plain text for a 100-column terminal: the summary's scalar entries (long values wrapped),
    then the module table (CARD_COLUMNS + a few) through the CLI's table formatter (aliases, legend, blocks)."""
    import json
    import textwrap

    from asymviz.card import CARD_COLUMNS
    from asymviz.cli.output import TABLE_WIDTH, format_table

    lines = []
    adapter = card.to_dict()["adapter"]
    for key, value in adapter.items():
        if key in ("alpha_pattern", "problems"):
            continue
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        lines += textwrap.wrap(f"{key}: {text}", TABLE_WIDTH, subsequent_indent="    ") or [f"{key}:"]
    cols = CARD_COLUMNS + ["a_test", "a_rel_change", "update_rel", "utilisation"]
    legend = ("a_verdict: is A still a draw of its init (random) or not (learned); a_percentile: A's place among "
              "seeded draws of its init; no_update: ΔW negligible; update_norm: ‖ΔW‖_F; energy_rank_90: the rank "
              "that keeps 90 % of ΔW's energy; suggested_rank: the smallest such rank; flags: see the README")  # fmt: skip
    lines.append("")
    lines.append(format_table(card.modules[cols], legend=legend).rstrip("\n"))
    return "\n".join(lines) + "\n"
