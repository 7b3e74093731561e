"""The one place a face's, a comparison's and an embed line's JSON shape is written (pydantic models).

``AnalysisResult.to_json``, ``CompareResult.to_json`` and ``frood embed`` delegate here, so the CLI, the
UI and the HTTP API serialise a face the same way. The HTTP routes' answers (``/extract``, ``/models``, the
PaddleX face routes and their envelope), the gallery's identify/enrol answers and the reject webhook's payload
are in :mod:`schemas.api`; FastAPI's ``/openapi.json`` documents them as the routes' response models.
"""

from schemas.faces import (
    CompareJSON,
    CompareSideJSON,
    EmbedFaceJSON,
    EmbedLineJSON,
    FaceJSON,
    NoFaceJSON,
    Reason,
    analysis_json,
    compare_json,
    embed_line,
)

__all__ = [
    "CompareJSON",
    "CompareSideJSON",
    "EmbedFaceJSON",
    "EmbedLineJSON",
    "FaceJSON",
    "NoFaceJSON",
    "Reason",
    "analysis_json",
    "compare_json",
    "embed_line",
]
