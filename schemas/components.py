"""The JSON shape of a face's ISO/IEC 29794-5 component report (issue 26).

``components_json`` takes an ``engine.quality.components.Components`` (duck-typed) and returns::

    {"unified_quality": 87,
     "components": {"HeadPoseYaw": {"value": -3.1, "unit": "deg", "quality": 99, "passes": true,
                                    "definition": "ofiq", "en": "...", "zh": "..."}, ...}}

keyed by measure name, in the engine's order; a measure that could not be computed is absent.
``components_csv_rows`` flattens reports for the CSV export of ``frood quality``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from schemas.component_messages import COMPONENT_TEXTS

VALUE_DIGITS = 4


class ComponentJSON(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: float
    unit: str
    quality: int  # 0–100
    passes: bool | None  # None: the measure has no requirement (or cannot be judged on this face)
    definition: Literal["ofiq", "ofiq-approx", "frood"]
    en: str
    zh: str


class ComponentsJSON(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unified_quality: int | None  # the calibrated OOD score as the standard's integer 0–100
    components: dict[str, ComponentJSON]


def component_json(component: Any) -> dict[str, Any]:
    en, zh = COMPONENT_TEXTS.get(component.name, (component.name, component.name))
    return {
        "value": round(float(component.value), VALUE_DIGITS),
        "unit": component.unit,
        "quality": int(component.quality),
        "passes": component.passes,
        "definition": component.definition,
        "en": en,
        "zh": zh,
    }


def components_json(components: Any) -> dict[str, Any]:
    """``{"unified_quality", "components"}`` for one face (see the module docstring)."""
    return {
        "unified_quality": components.unified,
        "components": {name: component_json(component) for name, component in components.measures.items()},
    }


CSV_FIXED = ("image", "face", "quality_score", "unified_quality", "reasons", "derived_reasons")


def components_csv_rows(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Flat CSV rows from ``{"image", "face", "quality_score", "reasons", "derived_reasons", "components"}``
    items: one row per face, ``<Measure>``, ``<Measure>_quality`` and ``<Measure>_passes`` columns for every
    measure seen (empty where a face lacks it). Returns (header, rows)."""
    names: list[str] = []
    for row in rows:
        for name in row.get("components", {}):
            if name not in names:
                names.append(name)
    header = [*CSV_FIXED] + [f"{name}{suffix}" for name in names for suffix in ("", "_quality", "_passes")]
    flat = []
    for row in rows:
        item = {key: row.get(key, "") for key in CSV_FIXED}
        for key in ("reasons", "derived_reasons"):
            item[key] = ";".join(row.get(key) or [])
        for name, component in row.get("components", {}).items():
            item[name] = component["value"]
            item[f"{name}_quality"] = component["quality"]
            item[f"{name}_passes"] = "" if component["passes"] is None else str(bool(component["passes"])).lower()
        flat.append(item)
    return header, flat
