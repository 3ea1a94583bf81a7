"""Plain-language sentences saying which specialists fired and why some abstained."""

from __future__ import annotations


def looks_for(name: str) -> str:
    """What a specialist's "fake" means, for people who do not know the model names (its class's
    `looks_for`; a specialist that is not registered gets the generic sentence)."""
    from dfpanel.models.specialists.base import Specialist, find_specialist

    return (find_specialist(name) or Specialist).looks_for


def _strength(p: float) -> str:
    if p >= 0.9:
        return "strongly"
    if p >= 0.7:
        return "clearly"
    return "weakly"


def truncation_sentence(video: dict) -> str | None:
    """What a cut file's verdict covers, or None when the file is whole."""
    t = video.get("truncation")
    if not t:
        return None
    covered, claimed = t.get("seconds_covered"), t.get("seconds_claimed")
    span = (f"only its first {covered:.1f} s of {claimed:.1f} s" if covered is not None and claimed
            else "only part of it")
    found, expected = t.get("frames_found"), t.get("frames_expected")
    frames = f" ({found} of {expected} frames)" if found is not None and expected else ""
    return f"The file is truncated: {span}{frames} could be read; the verdict covers that part only."


def explain(report: dict) -> list[str]:
    """Sentences for report['explanation'], from the verdict, specialists and moments."""
    if report["status"] != "analysed":
        err = report.get("error") or {}
        return [f"The video could not be analysed: {err.get('message', 'unknown reason')}."]
    out: list[str] = []
    panel = report["panel"]
    p, verdict = panel["probability"], report["verdict"]
    scored = [s for s in report["specialists"] if s["status"] == "scored"]
    if p is None:
        out.append("No specialist could score this video, so the panel gives no verdict.")
    else:
        pct, thr = round(100 * p), round(100 * panel["threshold"])
        if verdict == "fake":
            out.append(f"The panel judges this video likely manipulated: {pct}% against a threshold of {thr}%.")
        elif verdict == "real":
            out.append(f"The panel finds no convincing sign of manipulation: {pct}% against a threshold of {thr}%.")
        else:
            out.append(
                f"The panel is uncertain: {pct}% is within {round(100 * panel['margin'])} points of the "
                f"{thr}% threshold; treat this video as unresolved."
            )
    fired = sorted((s for s in scored if s["probability"] >= 0.55), key=lambda s: -s["probability"])
    quiet = [s for s in scored if s["probability"] < 0.45]
    undecided = [s for s in scored if 0.45 <= s["probability"] < 0.55]
    for s in fired:
        what = looks_for(s["name"])
        out.append(f"{s['title']} ({s['name'].upper()}) {_strength(s['probability'])} suspects that {what} "
                   f"({round(100 * s['probability'])}%).")
    if quiet:
        names = ", ".join(f"{s['title']} ({round(100 * s['probability'])}%)" for s in quiet)
        out.append(f"No sign of manipulation from: {names}.")
    if undecided:
        names = ", ".join(f"{s['title']} ({round(100 * s['probability'])}%)" for s in undecided)
        out.append(f"Undecided, close to 50%: {names}.")
    for s in report["specialists"]:
        if s["status"] == "abstained":
            out.append(f"{s['title']} ({s['name'].upper()}) abstained: {s['reason']}; it did not vote.")
        elif s.get("gated"):
            why = "; ".join(f"{reason} ({n})" for reason, n in (s.get("gated_reasons") or {}).items())
            out.append(f"{s['title']} ({s['name'].upper()}) left out {s['gated']} of its "
                       f"{s['gated'] + len(s['samples'])} samples as holding no evidence: {why}.")
    one_sided = set((panel.get("one_sided") or []))
    for s in scored:
        if s["name"] in one_sided and s["probability"] < 0.5:
            out.append(f"{s['title']} ({s['name'].upper()}) found nothing wrong, but it can only add evidence of "
                       "manipulation, never clear a video (a face swap can keep the original voice), so it did not "
                       "pull the verdict towards real.")
    moments = report["timeline"].get("moments") or []
    if moments and verdict != "real" and p is not None:
        times = ", ".join(f"{m['time']:.1f} s" for m in moments)
        out.append(f"The most suspicious moments are at {times} (marked on the timeline).")
    cut = truncation_sentence(report["video"])
    if cut:
        out.insert(1, cut)
    faces = report["faces"]
    if faces["tracks"] > 1:
        out.append(f"{faces['tracks']} faces were found; the report covers the main (largest, longest) one.")
    return out
