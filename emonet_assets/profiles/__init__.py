"""Named configurations. `EMONET_PROFILE` picks one (default `tiny`); `EMONET_ROOT` moves the storage root.
Finding and reading the file is lib/shared/profile_files.py; this module validates it into settings."""

from __future__ import annotations

import os
import tempfile
from decimal import Decimal
from typing import Literal

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from emonet_assets.lib.design.prompt_design import DesignSpec
from emonet_assets.lib.release.licenses import RELEASE_LICENSES, normalize
from emonet_assets.lib.shared.profile_files import ProfileError, catalog_path, read_profile
from emonet_assets.lib.shared.profile_files import available_profiles as available_profiles
from emonet_assets.lib.shared.profile_files import requested_profile as requested_profile


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StorageSettings(_Section):
    root: str = Field(description="Local folder or fsspec URL; EMONET_ROOT overrides it.")
    catalog: str | None = Field(
        default=None,
        description="DuckDB catalog file; defaults to <root>/catalog.duckdb for a local root, "
        "else .emonet/<profile>/catalog.duckdb. EMONET_CATALOG overrides it.",
    )


class TaxonomySettings(_Section):
    rollups: list[str] = Field(
        default_factory=list,
        description="Rollups: a shipped one by name (operational), or a mapping file ending in .yaml, relative to "
        "the project folder or absolute.",
    )


class GenerationSettings(dg.Config):
    """How images are generated; the image generator resource carries exactly these fields."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Local model folder or Hugging Face id (read from the local cache).")
    build_tiny: bool = Field(default=False, description="Build a tiny random pipeline at `model` if absent.")
    license: str = Field(description="License of the generation model's weights, recorded per image.")
    device: Literal["auto", "cuda", "cpu"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    batch_size: int = Field(default=4, ge=1)
    steps: int = Field(default=30, ge=1)
    guidance: float = 7.0
    width: int = Field(default=1024, ge=8)
    height: int = Field(default=1024, ge=8)
    scheduler: str | None = None
    compile: bool = False
    negative_prompt: str | None = None


class QCSettings(dg.Config):
    """Image quality control; face detection is off where the model cannot draw faces (tiny)."""

    model_config = ConfigDict(extra="forbid")

    face_detection: bool = True
    blank_std: float = Field(default=2.0, ge=0, description="Grey-level std below which an image is blank.")
    near_duplicate_distance: int = Field(default=4, ge=0, description="Max perceptual-hash Hamming distance.")
    max_quarantine_share: float = Field(default=0.1, ge=0, le=1, description="QC gate: most images quarantined.")


class LabelStudioSettings(dg.Config):
    """The Label Studio server the annotation loop pushes tasks to and pulls ratings from; its API token is read
    from EMONET_LABEL_STUDIO_TOKEN only."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(default="http://127.0.0.1:8080", description="Label Studio's address.")
    round: str = Field(
        default="round-1", pattern=r"^[a-z0-9-]{1,20}$", description="Annotation round: projects per round."
    )
    layout: Literal["intensity", "binary"] = Field(
        default="intensity", description="intensity: 0-7 per emotion; binary: present/absent, prompted and contrastive."
    )
    ratings_per_image: int = Field(default=3, ge=1, description="Images with fewer raters than this get a task.")
    local_files_root: str | None = Field(
        default=None,
        description="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT of the server, for a local storage root: the storage "
        "root itself when unset (make annotate starts Label Studio so).",
    )
    url_expiry_hours: int = Field(default=168, ge=1, le=168, description="Life of an S3 root's pre-signed image URLs.")


class AnnotationSettings(dg.Config):
    """Expert annotation imports, consensus and agreement (the dbt project's vars come from here)."""

    model_config = ConfigDict(extra="forbid")

    landing: str = Field(default="landing/annotations", description="Landing zone, relative to the storage root.")
    max_file_mb: float = Field(default=2048, gt=0, description="Larger files are rejected whole.")
    min_ratings: int = Field(default=3, ge=1, description="Fewer ratings make an item low-confidence.")
    max_item_std: float = Field(default=1.5, ge=0, description="A higher rating std makes an item disputed.")
    min_emotion_alpha: float = Field(default=0.2, description="Below it, an emotion's split items are re-rated.")
    min_pair_items: int = Field(default=5, ge=2, description="Common items an annotator pair needs for a kappa.")
    bootstrap_resamples: int = Field(default=1000, ge=10)
    bootstrap_seed: int = 42
    duckdb_threads: int | None = Field(default=None, ge=1, description="DuckDB threads for dbt; default: all cores.")
    duckdb_memory_limit: str | None = Field(
        default=None,
        pattern=r"^\d+(\.\d+)? ?([KMGT]i?B)$",
        description="DuckDB's memory limit for dbt, e.g. 4GB; past it DuckDB spills to the temp directory. "
        "Default: DuckDB's own, 80% of the memory it sees.",
    )
    duckdb_temp_directory: str | None = Field(
        default=None,
        description="Local folder DuckDB spills to, and where the release stages its rows in a database file "
        "(a node's local disk, not the storage root). Default: emonet-duckdb under the system's temporary folder.",
    )
    ratings_check_workers: int = Field(
        default=2,
        ge=1,
        description="Processes the ratings check validates the files in with GX, about 1 GB each; it starts one "
        "only for each file and each million ratings, and 1 validates in the check's own process.",
    )
    label_studio: LabelStudioSettings = Field(default_factory=LabelStudioSettings)

    def dbt_vars(self) -> dict:
        """The dbt project's vars; max_item_std as a plain decimal, which the SQL compares exactly."""
        return self.model_dump(
            include={
                "min_ratings",
                "max_item_std",
                "min_emotion_alpha",
                "min_pair_items",
                "bootstrap_resamples",
                "bootstrap_seed",
            }
        ) | {
            "max_item_std": format(Decimal(repr(self.max_item_std)), "f"),
            **{f"duckdb_{name}": value for name, value in self.duckdb_settings().items()},
        }

    def duckdb_settings(self) -> dict:
        """DuckDB's threads, memory limit and spill folder, for dbt and for the Python steps that query with it."""
        return {
            "threads": self.duckdb_threads or os.cpu_count() or 1,
            "memory_limit": self.duckdb_memory_limit or _duckdb_default_memory_limit(),
            "temp_directory": self.duckdb_temp_directory or os.path.join(tempfile.gettempdir(), "emonet-duckdb"),
        }


def _duckdb_default_memory_limit() -> str:
    """DuckDB's own default (80% of the memory it sees, container limits included), as a value dbt can set."""
    import duckdb

    with duckdb.connect() as con:
        return con.sql("select current_setting('memory_limit')").fetchone()[0]


class DatasetSettings(dg.Config):
    """Train/validation/test assignment of the rated images (the `splits` asset and its checks)."""

    model_config = ConfigDict(extra="forbid")

    train: float = Field(default=0.8, gt=0, lt=1)
    validation: float = Field(default=0.1, gt=0, lt=1)
    test: float = Field(default=0.1, gt=0, lt=1)
    seed: int = 42
    near_duplicate_distance: int = Field(default=4, ge=0, le=63, description="Max phash distance kept together.")
    min_test_per_cell: int = Field(default=1, ge=0, description="Test images each emotion x group cell needs.")
    thin_cell_severity: Literal["WARN", "ERROR"] = Field(
        default="ERROR", description="WARN where the design is too small for every cell to get test images."
    )
    share_tolerance: float = Field(default=0.02, gt=0, lt=1, description="Max |share - target| per split.")

    @property
    def ratios(self) -> tuple[float, float, float]:
        return (self.train, self.validation, self.test)


class EmbeddingSettings(dg.Config):
    """The vision backbone whose embeddings the emotion model reads."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["siglip", "clip", "tiny"] = "siglip"
    source: str = Field(
        default="google/siglip2-so400m-patch16-384",
        description="Local folder or Hugging Face id (read from the local cache only).",
    )
    build_tiny: bool = Field(default=False, description="Build a tiny random backbone at `source` if absent.")
    batch_size: int = Field(default=32, ge=1)
    device: Literal["auto", "cuda", "cpu"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"


class RealPhotoSet(dg.Config):
    """A labelled set of real photos to measure the synthetic-to-real gap on."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short name used in the result tables.")
    path: str = Field(description="A folder with one subfolder per class, or a CSV of path,label.")
    mapping: str = Field(
        default="emonet_assets/data/mappings/basic8.yaml",
        description="YAML mapping each class onto a taxonomy emotion or a '<rollup>:<level>'.",
    )


class ModelSettings(dg.Config):
    """The emotion model and its evaluation."""

    model_config = ConfigDict(extra="forbid")

    architecture: Literal["heads", "shared"] = Field(
        default="heads", description="heads: 40 independent MLP heads (the reference design); shared: one MLP."
    )
    hidden: list[int] = Field(default_factory=lambda: [128, 32], description="Hidden layer sizes (Small: 128, 32).")
    dropout: float = Field(default=0.1, ge=0, lt=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    batch_size: int = Field(default=256, ge=1)
    max_epochs: int = Field(default=200, ge=1)
    patience: int = Field(default=15, ge=1)
    seed: int = 42
    bootstrap_resamples: int = Field(default=1000, ge=10)
    bootstrap_seed: int = 42
    random_margin: float = Field(
        default=0.05, ge=0, description="Mean Spearman the model must beat the random baseline by (warning check)."
    )
    real_photo_sets: list[RealPhotoSet] = Field(default_factory=list)


class ZeroShotSettings(dg.Config):
    """An image-text model scored zero-shot: each image against a prompt per emotion from its word cluster."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The model's name on the leaderboard.")
    source: str = Field(description="Local folder or Hugging Face id of a CLIP or SigLIP checkpoint (cache only).")
    build_tiny: bool = Field(default=False, description="Build a tiny random two-tower SigLIP at `source` if absent.")
    template: str = Field(default="a photo of a face showing {words}", description="The prompt; {words} is filled.")
    words: int = Field(default=3, ge=0, description="Cluster words after the emotion's name in each prompt.")
    license: str | None = None


class VlmSettings(dg.Config):
    """A vision-language model behind an OpenAI-compatible chat endpoint (vLLM, Ollama, a hosted API), asked for a
    0-7 intensity of every emotion per image. Example entry of `leaderboard.vlm`:
    `{name: qwen-vl, base_url: http://localhost:8000/v1, model: Qwen/Qwen2.5-VL-7B-Instruct,
    api_key_env: VLLM_API_KEY, concurrency: 8, request_budget: 5000}`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The model's name on the leaderboard.")
    base_url: str = Field(description="The endpoint's OpenAI-compatible base URL, e.g. http://localhost:8000/v1.")
    model: str = Field(description="The model name the endpoint serves, e.g. Qwen/Qwen2.5-VL-7B-Instruct.")
    api_key_env: str | None = Field(
        default=None,
        description="Environment variable holding the API key (never the key itself); none for a local endpoint "
        "without authentication.",
    )
    concurrency: int = Field(default=4, ge=1, le=256, description="Requests in flight at once.")
    timeout_s: float = Field(default=60.0, gt=0, description="Seconds one request may take.")
    max_retries: int = Field(
        default=3,
        ge=0,
        description="Retries of a request on 429, 5xx, timeout or connection error (the openai client's backoff), "
        "and of an image whose answer is not a complete rating.",
    )
    request_budget: int | None = Field(
        default=None, ge=0, description="Most chat requests one scoring run sends; the images left are not scored."
    )
    max_tokens: int = Field(default=1024, ge=16, description="Most tokens an answer may have.")
    license: str | None = None


class LeaderboardSettings(dg.Config):
    """The leaderboard: every registered model scored on the same evaluation images."""

    model_config = ConfigDict(extra="forbid")

    landing: str = Field(
        default="landing/predictions", description="Landing zone of predictions files, relative to the storage root."
    )
    collections: list[str] = Field(
        default_factory=list,
        description="Imported intensity collections scored beside the generated test split (e.g. an external set).",
    )
    min_coverage: float = Field(
        default=0.9, ge=0, le=1, description="A model scoring fewer of the rated cells is listed, not ranked."
    )
    bootstrap_resamples: int = Field(default=1000, ge=10)
    bootstrap_seed: int = 42
    zero_shot: list[ZeroShotSettings] = Field(default_factory=list, description="Zero-shot models to register.")
    vlm: list[VlmSettings] = Field(
        default_factory=list,
        description="Vision-language models behind OpenAI-compatible endpoints to register; scoring them sends "
        "requests, so no profile shipped here names one.",
    )


class FairnessSettings(dg.Config):
    """The fairness report and its gates: the largest allowed between-group gap per metric."""

    model_config = ConfigDict(extra="forbid")

    min_group_size: int = Field(default=20, ge=1, description="Smaller groups are reported as too small, not ranked.")
    bootstrap_resamples: int = Field(default=1000, ge=10)
    bootstrap_seed: int = 42
    max_gap: dict[str, float] = Field(
        default_factory=lambda: {"mean_spearman": 0.15, "mean_mae": 0.5, "mean_presence_f1": 0.15},
        description="Gate per metric: the largest allowed difference between the best and worst group.",
    )
    gate_severity: Literal["WARN", "ERROR"] = "ERROR"


class ReleaseSettings(dg.Config):
    """The published benchmark: its declared license, how its Parquet shards are sized, and when it is refused."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="emonet-face", description="Dataset name in the card and the Croissant file.")
    pretty_name: str = Field(default="EmoNet-Face (rebuild)", description="Human-readable name on the card.")
    version: str = Field(default="0.1.0", description="Version the card and the Croissant file state.")
    license: str = Field(
        default="cc-by-4.0",
        description=f"Declared dataset license, one of {', '.join(RELEASE_LICENSES)}; every image's generation "
        "model license must permit it (lib/release/licenses.py).",
    )
    shard_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024, description="Largest Parquet shard; a single larger row is a shard alone."
    )
    max_failed_qc_share: float = Field(
        default=0.1, ge=0, le=1, description="A release is refused when more of the generated images failed QC."
    )

    @field_validator("license")
    @classmethod
    def _known_license(cls, value: str) -> str:
        if normalize(value) not in RELEASE_LICENSES:
            raise ValueError(f"unknown release license {value!r}; one of {', '.join(RELEASE_LICENSES)}")
        return normalize(value)


class ScheduleSettings(dg.Config):
    """What the schedules do when they are turned on (both start stopped: generation costs GPU hours)."""

    model_config = ConfigDict(extra="forbid")

    nightly_shards: int = Field(default=8, ge=1, description="Prompt shards without images generated each night.")


class AlertSettings(dg.Config):
    """Where failed runs and failed checks are reported. The storage root's alerts table and the log always;
    a webhook and e-mail when set. EMONET_ALERT_WEBHOOK_URL and EMONET_SMTP_PASSWORD keep secrets out of files."""

    model_config = ConfigDict(extra="forbid")

    ui_base_url: str = Field(default="http://127.0.0.1:3000", description="Dagster UI address for run links.")
    min_check_severity: Literal["WARN", "ERROR"] = Field(
        default="WARN", description="Failed checks below this severity are not alerted."
    )
    webhook_url: str | None = Field(default=None, description="Slack incoming webhook or any JSON endpoint.")
    webhook_timeout_s: float = Field(default=5, gt=0)
    webhook_retries: int = Field(default=3, ge=0)
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_sender: str | None = None
    smtp_recipients: list[str] = Field(default_factory=list)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False


class Profile(_Section):
    name: str
    description: str
    storage: StorageSettings
    taxonomy: TaxonomySettings = Field(default_factory=TaxonomySettings)
    design: DesignSpec
    generation: GenerationSettings
    qc: QCSettings = Field(default_factory=QCSettings)
    annotation: AnnotationSettings = Field(default_factory=AnnotationSettings)
    dataset: DatasetSettings = Field(default_factory=DatasetSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    leaderboard: LeaderboardSettings = Field(default_factory=LeaderboardSettings)
    fairness: FairnessSettings = Field(default_factory=FairnessSettings)
    release: ReleaseSettings = Field(default_factory=ReleaseSettings)
    schedules: ScheduleSettings = Field(default_factory=ScheduleSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    source: str = ""

    @property
    def root(self) -> str:
        return self.storage.root

    @property
    def catalog_path(self) -> str:
        return catalog_path(self.name, self.root, self.storage.catalog)


def load_profile(name: str | None = None, env: dict | None = None, given_by: str | None = None) -> Profile:
    """A profile file read by `read_profile` (a name wins over EMONET_PROFILE; `given_by`, e.g. `--profile`, is
    named in the error for an unknown one), validated into its settings."""
    name, path, data = read_profile(name, env, given_by)
    data["design"] = {**data.get("design", {}), "source": f"profile {name} ({path})"}
    try:
        return Profile(name=name, source=str(path), **data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ProfileError(f"{path}: {problems}") from exc
