"""What the specialists in use learned from, said plainly wherever a verdict is shown.

Each weights sidecar records its provenance (`dfpanel.weights.sidecar`); a report's `weights` carries
each specialist's `training_data`: "synthetic", "real" or "unknown". From those, report.json's
`training_data` field:

    {"demonstration": true,              # some specialist in use learned only from synthetic data
     "synthetic_only": ["bg", "cm"],     # those specialists
     "real": ["av"],                     # learned from datasets not made by `dfpanel synth`
     "unknown": ["tm"],                  # their weights record no provenance
     "notice": "Demonstration only: ...", # the banner text when demonstration, else null
     "note": "Training data unknown ..."} # the neutral note when some are unknown, else null

Synthetic-only weights get the banner (the verdict shows the pipeline runs, it is not evidence about a
real video). Weights with no provenance (made before dfpanel recorded it, or by a third party) get a
neutral note instead: calling them synthetic would be as unfounded as calling them real.
"""

from __future__ import annotations

HOW_TO_GET_REAL_WEIGHTS = (
    "train on real datasets (README, \"Training on the real datasets\") or install published weights "
    "with `dfpanel weights fetch URL --sha256 HEX`"
)


def _names(names: list[str]) -> str:
    return ", ".join(n.upper() for n in names)


def training_data(weights: dict[str, dict]) -> dict:
    """report['training_data'] from report['weights'] (specialist -> its weights info)."""
    kinds = {name: (info or {}).get("training_data") for name, info in weights.items()}
    synthetic = [n for n, k in kinds.items() if k == "synthetic"]
    real = [n for n, k in kinds.items() if k == "real"]
    unknown = [n for n, k in kinds.items() if k not in ("synthetic", "real")]
    notice = note = None
    if synthetic:
        who = "specialist" if len(synthetic) == 1 else "specialists"
        notice = (f"Demonstration only: the {_names(synthetic)} {who} learned only from synthetic videos made by "
                  "`dfpanel synth`. This verdict shows that the pipeline runs; it is not evidence about a real "
                  f"video. For real use, {HOW_TO_GET_REAL_WEIGHTS}.")
    if unknown:
        note = (f"Training data unknown for {_names(unknown)}: the weights do not record what they learned from "
                "(made before dfpanel recorded it, or elsewhere); check where they came from before relying on "
                "the verdict.")
    return {"demonstration": bool(synthetic), "synthetic_only": synthetic, "real": real, "unknown": unknown,
            "notice": notice, "note": note}


def short_notice(td: dict | None) -> str | None:
    """A few words for one terminal line or table cell: "DEMO: BG, CM learned only from synthetic data"."""
    if not td:
        return None
    if td.get("demonstration"):
        return f"DEMO: {_names(td['synthetic_only'])} learned only from synthetic data, not evidence about a real video"
    if td.get("unknown"):
        return f"training data unknown: {_names(td['unknown'])}"
    return None


def summary_cell(td: dict | None) -> str:
    """summary.csv's training_data column."""
    if not td:
        return "unknown"
    parts = []
    if td.get("synthetic_only"):
        parts.append(f"synthetic only: {_names(td['synthetic_only'])}")
    if td.get("unknown"):
        parts.append(f"unknown: {_names(td['unknown'])}")
    return "; ".join(parts) or ("real datasets" if td.get("real") else "")
