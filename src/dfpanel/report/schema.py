"""report.json: a versioned schema, written as JSON Schema, and a small validator for it.

The schema is plain JSON Schema (draft 2020-12 subset: type, required, properties, enum, items,
minimum/maximum, additionalProperties) so other tools can validate reports too; `validate_report`
checks that subset here without a jsonschema dependency. Bump REPORT_VERSION when a field changes
meaning or disappears, or a new field becomes required; adding an optional field does not need a bump.

Versions: 1, the first; 2 adds the required `training_data` (what the specialists in use learned from,
and the demonstration notice when some learned only from synthetic data; `dfpanel.report.training`).
A version-1 report is not read as version 2: its silence about training data would pass for "real".
"""

from __future__ import annotations

from typing import Any

from dfpanel.errors import DataError

REPORT_VERSION = 2
REPORT_KIND = "dfpanel.report"

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_PROB_OR_NULL = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_STR_OR_NULL = {"type": ["string", "null"]}

SAMPLE = {
    "type": "object",
    "required": ["time", "start", "end", "position", "frame", "logit", "prob"],
    "properties": {
        "time": _NUM,  # centre of the sample, seconds
        "start": _NUM,
        "end": _NUM,
        "position": {"type": "integer", "minimum": 0},  # first frame position in the face track
        "frame": {"type": "integer", "minimum": 0},  # decoded frame index of that position
        "logit": _NUM,
        "prob": {"type": "number", "minimum": 0, "maximum": 1},
    },
}

SPECIALIST = {
    "type": "object",
    "required": ["name", "title", "status", "probability", "logit", "reason", "sample_kind", "samples"],
    "properties": {
        "name": {"type": "string"},
        "title": {"type": "string"},
        "color": _STR_OR_NULL,  # optional: its colour in the plots (reports before it use the class's)
        "status": {"enum": ["scored", "abstained"]},
        "probability": _PROB_OR_NULL,
        "logit": _NUM_OR_NULL,
        "reason": _STR_OR_NULL,  # why it abstained, e.g. "no audio track"
        "sample_kind": {"enum": ["frame", "clip"]},
        "contribution": _NUM_OR_NULL,  # push on the panel logit (+ = towards fake)
        "weights_id": _STR_OR_NULL,
        "samples": {"type": "array", "items": SAMPLE},  # the samples that counted (gated ones are not scored)
        # samples its gate left out as holding no evidence (e.g. AV: silent clips), and why; optional
        "gated": {"type": "integer", "minimum": 0},
        "gated_reasons": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
    },
}

_NAMES = {"type": "array", "items": {"type": "string"}}

TRAINING_DATA = {
    "type": "object",
    "required": ["demonstration", "synthetic_only", "real", "unknown", "notice", "note"],
    "properties": {
        "demonstration": {"type": "boolean"},  # some specialist in use learned only from synthetic data
        "synthetic_only": _NAMES,  # those specialists
        "real": _NAMES,  # specialists whose weights learned from datasets not made by `dfpanel synth`
        "unknown": _NAMES,  # specialists whose weights record no provenance
        "notice": _STR_OR_NULL,  # the demonstration banner, when demonstration
        "note": _STR_OR_NULL,  # the neutral "training data unknown" note, when some are unknown
    },
}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "dfpanel detection report",
    "type": "object",
    "required": ["kind", "version", "dfpanel_version", "created", "video", "status", "error", "verdict",
                 "panel", "specialists", "faces", "timeline", "timings", "weights", "training_data", "explanation"],
    "properties": {
        "kind": {"enum": [REPORT_KIND]},
        "version": {"enum": [REPORT_VERSION]},
        "dfpanel_version": {"type": "string"},
        "created": {"type": "string"},
        "video": {
            "type": "object",
            "required": ["path", "name"],
            "properties": {
                "path": {"type": "string"},
                "name": {"type": "string"},
                "size_bytes": {"type": ["integer", "null"]},
                "container": _STR_OR_NULL,
                "codec": _STR_OR_NULL,
                "width": {"type": ["integer", "null"]},
                "height": {"type": ["integer", "null"]},
                "fps": _NUM_OR_NULL,
                "duration": _NUM_OR_NULL,
                "has_audio": {"type": ["boolean", "null"]},
                # a cut file (index intact, data missing): what was analysed against what the header
                # claims; null or absent when the file is whole. `duration` is then the time covered.
                "truncation": {"type": ["object", "null"], "properties": {
                    "frames_found": {"type": ["integer", "null"], "minimum": 0},
                    "frames_expected": {"type": ["integer", "null"], "minimum": 0},
                    "frames_decoded": {"type": ["integer", "null"], "minimum": 0},
                    "frames_sampled": {"type": ["integer", "null"], "minimum": 0},
                    "seconds_covered": _NUM_OR_NULL,
                    "seconds_claimed": _NUM_OR_NULL,
                }},
            },
        },
        "status": {"enum": ["analysed", "failed"]},
        "error": {
            "type": ["object", "null"],
            "required": ["kind", "message"],
            "properties": {
                "kind": {"enum": ["not_found", "not_video", "corrupt", "no_face", "error"]},
                "message": {"type": "string"},
            },
        },
        "verdict": {"enum": ["real", "fake", "uncertain", None]},
        "strongest": _STR_OR_NULL,
        "panel": {
            "type": "object",
            "required": ["probability", "threshold", "margin", "fitted"],
            "properties": {
                "probability": _PROB_OR_NULL,
                "threshold": {"type": "number", "minimum": 0, "maximum": 1},
                "margin": {"type": "number", "minimum": 0, "maximum": 0.5},
                "fitted": {"type": "boolean"},
                "threshold_method": {"type": "string"},
                "aggregate": {"type": "string"},
                # specialists whose "real" the panel ignores (their evidence only pushes towards fake)
                "one_sided": {"type": "array", "items": {"type": "string"}},
            },
        },
        "specialists": {"type": "array", "items": SPECIALIST},
        "faces": {
            "type": "object",
            "required": ["tracks", "frames", "detected_frames"],
            "properties": {
                "tracks": {"type": "integer", "minimum": 0},
                "frames": {"type": "integer", "minimum": 0},
                "detected_frames": {"type": "integer", "minimum": 0},
                "mean_score": _NUM_OR_NULL,
                "detector": _STR_OR_NULL,
            },
        },
        "timeline": {
            "type": "object",
            "required": ["times", "panel", "moments"],
            "properties": {
                "times": {"type": "array", "items": _NUM},
                "panel": {"type": "array", "items": _PROB_OR_NULL},
                "moments": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["time", "probability", "position"],
                        "properties": {"time": _NUM, "probability": _PROB_OR_NULL, "position": {"type": "integer"}},
                    },
                },
            },
        },
        "timings": {"type": "object", "additionalProperties": _NUM},
        "weights": {"type": "object"},  # specialist -> file, stage, sha256, training_data, datasets, input_spec
        "training_data": TRAINING_DATA,
        "backend": {"enum": ["torch", "onnx"]},
        "device": {"type": "string"},
        "explanation": {"type": "array", "items": {"type": "string"}},
    },
}

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


class ReportSchemaError(DataError):
    """A report does not follow the schema."""


def _is(value: Any, type_name: str) -> bool:
    if type_name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[type_name])


def schema_errors(value: Any, schema: dict = REPORT_SCHEMA, path: str = "$") -> list[str]:
    """Every place where value breaks the schema, as 'path: problem' lines."""
    errs: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_is(value, t) for t in types):
            return [f"{path}: expected {' or '.join(types)}, got {type(value).__name__}"]
    if _is(value, "number") and not isinstance(value, bool):
        if value != value:  # NaN never belongs in a report (JSON has no NaN)
            return [f"{path}: NaN"]
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{path}: {value} < minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(f"{path}: {value} > maximum {schema['maximum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errs.append(f"{path}: missing {key!r}")
        props = schema.get("properties", {})
        for key, sub in value.items():
            if key in props:
                errs += schema_errors(sub, props[key], f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errs += schema_errors(sub, schema["additionalProperties"], f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errs += schema_errors(item, schema["items"], f"{path}[{i}]")
    return errs


def validate_report(report: dict, source: str = "report.json") -> dict:
    """Return the report if it follows the schema; else ReportSchemaError naming the first problems."""
    if isinstance(report, dict) and report.get("version") not in (None, REPORT_VERSION):
        raise ReportSchemaError(
            f"{source}: report version {report.get('version')} is not supported by this dfpanel "
            f"(reads version {REPORT_VERSION}); re-run `dfpanel detect` or upgrade dfpanel"
        )
    errs = schema_errors(report)
    if errs:
        more = f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""
        raise ReportSchemaError(f"{source}: not a valid dfpanel report: {'; '.join(errs[:3])}{more}")
    return report
