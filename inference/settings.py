"""Every environment variable the project reads, typed, with its default: the one place to look.

Each field's alias is the variable's name; the README's configuration table lists the same names
(a test keeps the two in step). Nothing else in the project reads ``os.environ`` for configuration.

``Settings`` is a pydantic-settings ``BaseSettings``, but only ``Settings.from_env()`` reads variables: it
reads the process environment, or a given mapping in its place (os.environ untouched), through
pydantic-settings' environment source. Names are case-sensitive, and a variable that is empty or only
whitespace counts as unset. Constructing ``Settings(...)`` directly takes only the values given (by
variable name or field name) and defaults for the rest, whatever the environment holds. No ``.env`` file
or secrets folder is read, and no variable is split into nested fields.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

SEVEN_DAYS_S = 7 * 24 * 3600
RUNPOD_VOLUME = "/runpod-volume"  # where RunPod mounts a serverless endpoint's network volume


class Environment(EnvSettingsSource):
    """Variables of ``environ`` (the process environment when None), with empty or blank ones left out."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None):
        self.environ = environ  # read by _load_env_vars, which the base class calls
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        found = super()._load_env_vars() if self.environ is None else self.environ
        names = set(self.settings_cls.env_names())  # the variables' names only, never a field's own name
        return {name: value for name, value in found.items()
                if name in names and value is not None and value.strip()}


def writable_folder(folder: Path, parents: bool = False) -> bool:
    """Whether ``folder`` exists or can be made, and takes files (a network volume may be mounted read-only)."""
    import tempfile

    try:
        folder.mkdir(parents=parents, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            return True
    except OSError:
        return False


class Settings(BaseSettings):
    """Configuration of the worker and the API shim, read once at start-up (``Settings.from_env()``)."""

    model_config = SettingsConfigDict(
        frozen=True, populate_by_name=True, extra="ignore", case_sensitive=True, env_prefix="",
        env_ignore_empty=True, env_nested_delimiter=None, env_file=None, secrets_dir=None)

    # --- checkpoints and devices ---
    checkpoint_dir: Path = Field(
        Path("/app/checkpoints"), alias="ACESTEP_CHECKPOINT_DIR",
        description="Folder holding the checkpoint folders baked into the image.")
    dit_model: str = Field(
        "acestep-v15-turbo", alias="ACESTEP_DIT_MODEL",
        description="DiT checkpoint folder name under ACESTEP_CHECKPOINT_DIR (diffusers layout).")
    config_path: Path | None = Field(
        None, alias="ACESTEP_CONFIG_PATH",
        description="Path of the DiT folder (a relative one is under ACESTEP_CHECKPOINT_DIR); wins over the two above.")
    lm_model: str | None = Field(
        None, alias="ACESTEP_LM_MODEL",
        description="5 Hz LM folder name; unset = chosen by GPU tier; 'none' disables the LM.")
    lm_model_path: Path | None = Field(
        None, alias="ACESTEP_LM_MODEL_PATH",
        description="Path of the LM folder (a relative one is under ACESTEP_CHECKPOINT_DIR); wins when set.")
    lm_backend: Literal["pt", "vllm"] = Field(
        "pt", alias="ACESTEP_LM_BACKEND", description="'pt' (transformers) or 'vllm' when installed.")
    device: str = Field(
        "auto", alias="ACESTEP_DEVICE", description="auto (cuda > mps > cpu), or a torch device string.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", alias="ACESTEP_DTYPE", description="auto = bfloat16 on CUDA, float32 elsewhere.")
    vae_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", alias="ACESTEP_VAE_DTYPE",
        description="Dtype of the VAE decoder; auto = ACESTEP_DTYPE's, as upstream (float32 for the last bit of "
                    "fidelity at some speed).")
    mp3_encoder: Literal["lameenc", "libsndfile"] = Field(
        "lameenc", alias="ACESTEP_MP3_ENCODER",
        description="MP3 encoder: lameenc (LAME at -q 2, about 40 % of the CPU time, bench/encoders.py) or "
                    "libsndfile.")
    encode_threads: int | None = Field(
        None, ge=1, le=256, alias="ACESTEP_ENCODE_THREADS",
        description="Threads that encode a job's songs; an MP3 song is cut into parts so that a batch smaller than "
                    "this still uses them all. Unset = the cores this process may use (its CPU affinity and "
                    "container quota).")
    vae_chunk_s: float = Field(
        30.0, ge=1.0, le=600.0, alias="ACESTEP_VAE_CHUNK_S",
        description="Longer songs are VAE-decoded in chunks of this many seconds, joined by overlap-add: bounded "
                    "memory, time linear in the length.")
    attention_backend: str = Field(
        "auto", alias="ACESTEP_ATTENTION_BACKEND",
        description="The DiT's attention kernel (diffusers' attention dispatcher): auto = 'flash' when flash-attn "
                    "is installed on CUDA (sliding windows natively, no dense mask), else 'native' (PyTorch SDPA); "
                    "or any diffusers backend name, e.g. '_native_cudnn', '_native_efficient', 'flash'.")
    compile: Literal["auto", "off", "dit", "all"] = Field(
        "auto", alias="ACESTEP_COMPILE",
        description="torch.compile: 'dit' (the DiT blocks), 'all' (and the VAE decoder) or 'off'; auto = 'all' "
                    "on CUDA when this GPU's kernel cache is in ACESTEP_COMPILE_CACHE, else 'off'.")
    compile_cache_dir: Path | None = Field(
        None, alias="ACESTEP_COMPILE_CACHE",
        description="Folder of compiled-kernel caches (one file per torch version and GPU model); unset = "
                    "ACESTEP_CHECKPOINT_DIR/compile-cache. Written after the first compile when writable.")
    warmup: bool = Field(
        True, alias="ACESTEP_WARMUP", description="Run one short generation at start-up.")
    max_duration_s: float | None = Field(
        None, alias="ACESTEP_MAX_DURATION", description="Longest song in seconds; unset = by GPU tier.")
    max_batch_size: int | None = Field(
        None, alias="ACESTEP_MAX_BATCH_SIZE", description="Largest batch; unset = by GPU tier.")

    # --- checkpoints from the host's model cache (README "Cached models: the slim image") ---
    hf_cache_dir: Path | None = Field(
        None, alias="ACESTEP_HF_CACHE",
        description="Hugging Face hub cache to take checkpoints from when the DiT folder does not exist; unset = "
                    "RunPod's cached models, /runpod-volume/huggingface-cache/hub.")
    hf_hub_cache: Path | None = Field(
        None, alias="HF_HUB_CACHE", description="The hub library's cache folder; looked in too when set.")
    hf_home: Path | None = Field(None, alias="HF_HOME", description="The hub library's home; its hub/ is looked in "
                                                                    "too when set.")
    converted_dir: Path | None = Field(
        None, alias="ACESTEP_CONVERTED_DIR",
        description="Where a cached original-layout checkpoint is converted once, for later cold starts to reuse; "
                    "unset = /runpod-volume/acestep-converted when a network volume is mounted there and writable, "
                    "else (or 'none') it is converted in memory at each start.")

    # --- LoRA adapters (README "LoRA adapters") ---
    lora_dir: Path | None = Field(
        None, alias="ACESTEP_LORA_DIR",
        description="Folder of LoRA adapters a request names (<name>.safetensors or a folder <name>/); unset = "
                    "/runpod-volume/loras when a RunPod network volume holds one, else none by name.")
    lora_cache_mb: int = Field(
        2048, ge=0, alias="ACESTEP_LORA_CACHE",
        description="MiB of LoRA adapters kept loaded (least recently used go first), so a second request for "
                    "one pays nothing; 0 = each is loaded for its job and dropped after.")
    lora_max_mb: int = Field(
        512, ge=1, le=16384, alias="ACESTEP_LORA_MAX_MB",
        description="Largest LoRA adapter file, in MiB (checked before it is read or downloaded).")

    # --- outputs and storage (docs/api.md section 5) ---
    output_dir: Path | None = Field(
        None, alias="ACESTEP_OUTPUT_DIR",
        description="When set and no bucket is configured, audio is written here and returned as paths.")
    inline_max_bytes: int = Field(
        7_000_000, alias="ACESTEP_INLINE_MAX_BYTES",
        description="Largest total audio returned inline as base64 (base64 grows it by a third).")
    upload_attempts: int = Field(
        4, ge=1, le=10, alias="ACESTEP_UPLOAD_ATTEMPTS",
        description="Tries per upload call (botocore's standard retry mode: backoff with jitter, only for "
                    "throttling, 5xx answers and dropped connections).")
    undelivered_dir: Path | None = Field(
        None, alias="ACESTEP_UNDELIVERED_DIR",
        description="Where audio is kept when its delivery fails, so nothing made is lost; unset = "
                    "/runpod-volume/acestep-undelivered when a RunPod network volume is mounted (reachable after the "
                    "worker is gone), else /tmp/acestep-undelivered.")
    undelivered_ttl_s: int = Field(
        86400, ge=60, alias="ACESTEP_UNDELIVERED_TTL",
        description="Seconds kept audio stays in ACESTEP_UNDELIVERED_DIR; older job folders are removed whenever "
                    "audio is kept.")
    allow_private_endpoints: bool = Field(
        False, alias="ACESTEP_ALLOW_PRIVATE_ENDPOINTS",
        description="Let a job's s3Config endpoint, and the shim's fetches of bucket audio, be loopback, private or "
                    "link-local addresses; off = public addresses only, so callers cannot reach internal services.")
    bucket_endpoint_url: str | None = Field(None, alias="BUCKET_ENDPOINT_URL", description="S3-compatible endpoint.")
    bucket_access_key_id: str | None = Field(None, alias="BUCKET_ACCESS_KEY_ID", description="Bucket access key.")
    bucket_secret_access_key: SecretStr | None = Field(
        None, alias="BUCKET_SECRET_ACCESS_KEY", description="Bucket secret key.")
    bucket_name: str | None = Field(
        None, alias="BUCKET_NAME",
        description="Bucket for finished audio (on a shim in front of RunPod: where audio inputs too big for a job "
                    "pass through).")
    bucket_region: str | None = Field(None, alias="BUCKET_REGION", description="Bucket region, if it needs one.")
    bucket_prefix: str = Field("acestep", alias="BUCKET_PREFIX", description="Key prefix for uploaded audio.")
    bucket_url_expiry_s: int = Field(
        SEVEN_DAYS_S, ge=1, le=SEVEN_DAYS_S, alias="BUCKET_URL_EXPIRY",
        description="Lifetime of presigned URLs in seconds (S3 allows at most 7 days).")

    job_concurrency: int | None = Field(
        None, ge=1, le=16, alias="ACESTEP_JOB_CONCURRENCY",
        description="Jobs in flight at once: one generates while the others are encoded and uploaded or wait, and "
                    "compatible waiting jobs render as one batch. Unset = 2 on a RunPod worker (concurrency_modifier: "
                    "a job taken early waits inside the worker against RunPod's execution timeout, hidden from the "
                    "autoscaler), 4 in pod mode (the tasks wait in the same process either way, so more batch).")

    # --- set by RunPod on its workers ---
    runpod_post_output_url: str | None = Field(
        None, alias="RUNPOD_WEBHOOK_POST_OUTPUT",
        description="Set by RunPod; when present, progress updates are sent during generation.")

    # --- the HTTP API shim ---
    api_host: str = Field("0.0.0.0", alias="ACESTEP_API_HOST", description="Shim listen address.")
    api_port: int = Field(8000, alias="ACESTEP_API_PORT", description="Shim listen port.")
    api_key: SecretStr | None = Field(None, alias="ACESTEP_API_KEY", description="Bearer key; unset = no auth.")
    queue_maxsize: int = Field(
        200, ge=1, alias="ACESTEP_QUEUE_MAXSIZE",
        description="Shim: tasks that may be waiting or running at once (pod mode: waiting for the GPU; runpod "
                    "backend: unfinished at RunPod); one more answers HTTP 429.")
    queue_max_bytes: int = Field(
        512 * 1024 * 1024, ge=0, alias="ACESTEP_QUEUE_MAX_BYTES",
        description="Shim: bytes of audio input files (src/reference audio, as decoded from base64) that waiting "
                    "tasks may hold together (local backend); a task that would go over answers HTTP 429. A task "
                    "is always let in while no waiting task holds audio.")
    shim_backend: Literal["auto", "local", "runpod"] = Field(
        "auto", alias="ACESTEP_SHIM_BACKEND",
        description="Shim: 'runpod' forwards to a RunPod endpoint, 'local' generates in-process (pod mode); "
                    "auto = runpod when RUNPOD_ENDPOINT_ID and RUNPOD_API_KEY are set.")
    max_body_bytes: int = Field(
        48 * 1024 * 1024, ge=1024, alias="ACESTEP_MAX_BODY_BYTES",
        description="Shim: largest request body (base64 audio inputs included); larger answers HTTP 413. "
                    "The runpod backend also keeps to RunPod's payload limits (about 10 MB for release_task) unless "
                    "BUCKET_* is set on the shim: then big audio inputs pass through that bucket.")
    body_budget_bytes: int = Field(
        192 * 1024 * 1024, ge=1024, alias="ACESTEP_BODY_BUDGET_BYTES",
        description="Shim: request bodies all requests together may be reading at once; past it HTTP 503.")
    cors_origins: str = Field(
        "null,http://localhost,http://127.0.0.1", alias="ACESTEP_CORS_ORIGINS",
        description="Shim: browser origins allowed to call it, comma-separated ('null' = pages opened from a file; "
                    "'*' = any); upstream's rule by default.")
    cors_origin_regex: str = Field(
        r"^https?://(localhost|127\.0\.0\.1)(:\d+)?$", alias="ACESTEP_CORS_ORIGIN_REGEX",
        description="Shim: origins matching this are allowed too (default: localhost on any port); 'none' = none.")
    tmp_dir: Path | None = Field(
        None, alias="ACESTEP_TMPDIR",
        description="Shim: the output folder when ACESTEP_OUTPUT_DIR is unset (upstream's variable); audio goes to "
                    "its api_audio/ subfolder.")
    task_db: Path | None = Field(
        None, alias="ACESTEP_TASK_DB",
        description="Shim: SQLite file of task records; unset = tasks.sqlite3 in the shim's output folder.")
    result_ttl_s: int = Field(
        SEVEN_DAYS_S, ge=60, alias="ACESTEP_RESULT_TTL",
        description="Shim: seconds finished tasks and their local audio files are kept (at least 60); they are "
                    "removed at start and then every hour, or every quarter of this when that is shorter.")

    # --- the shim's RunPod backend ---
    runpod_endpoint_id: str | None = Field(
        None, alias="RUNPOD_ENDPOINT_ID", description="Shim: the RunPod serverless endpoint to forward jobs to.")
    runpod_api_key: SecretStr | None = Field(None, alias="RUNPOD_API_KEY", description="Shim: RunPod API key.")
    runpod_base_url: str = Field(
        "https://api.runpod.ai/v2", alias="RUNPOD_ENDPOINT_BASE_URL",
        description="Shim: RunPod's queue API (the same variable as RunPod's SDK); overridable for tests.")
    runpod_attempts: int = Field(
        5, ge=1, le=10, alias="ACESTEP_RUNPOD_ATTEMPTS",
        description="Shim: tries per RunPod API call on 429, 5xx or a network error, with backoff.")
    runpod_timeout_s: float = Field(
        30.0, ge=1.0, le=600.0, alias="ACESTEP_RUNPOD_TIMEOUT",
        description="Shim: seconds to wait for an answer from RunPod's API (runsync waits longer by design).")
    task_timeout_s: float = Field(
        7200.0, ge=10.0, alias="ACESTEP_TASK_TIMEOUT",
        description="Shim (runpod backend): a task still unfinished this many seconds after it was submitted is "
                    "cancelled at RunPod and fails with that reason, so none stays running forever.")
    runpod_backoff_s: float = Field(
        0.5, ge=0.0, le=30.0, alias="ACESTEP_RUNPOD_BACKOFF",
        description="Shim: first retry delay in seconds for RunPod API calls; it doubles with each try.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the constructor's values: ``Settings(...)`` never reads the environment, ``from_env`` does."""
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """The settings the process environment gives, or ``environ`` when given (os.environ is then not read)."""
        return cls(**Environment(cls, environ)())

    @classmethod
    def env_names(cls) -> list[str]:
        return [field.alias for field in cls.model_fields.values() if field.alias]

    # --- derived values ---
    @property
    def dit_path(self) -> Path:
        """ACESTEP_CONFIG_PATH (a relative one under the checkpoint folder, as upstream), else the folder by name."""
        if self.config_path:
            return self.config_path if self.config_path.is_absolute() else self.checkpoint_dir / self.config_path
        return self.checkpoint_dir / self.dit_model

    @property
    def dit_name(self) -> str:
        return self.dit_path.name

    @property
    def shim_output_dir(self) -> Path:
        """Where the shim keeps audio and its task records: ACESTEP_OUTPUT_DIR, else ACESTEP_TMPDIR, else ./outputs."""
        return (self.output_dir or self.tmp_dir or Path("outputs")).resolve()

    @property
    def shim_audio_dir(self) -> Path:
        """Where the shim writes finished audio: ``api_audio/`` in its output folder, where upstream writes it."""
        return self.shim_output_dir / "api_audio"

    @property
    def shim_task_db(self) -> Path:
        return self.task_db or self.shim_output_dir / "tasks.sqlite3"

    @property
    def shim_uses_runpod(self) -> bool:
        if self.shim_backend != "auto":
            return self.shim_backend == "runpod"
        return bool(self.runpod_endpoint_id and self.runpod_api_key)

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def cors_regex(self) -> str | None:
        return None if self.cors_origin_regex.strip().lower() in ("", "none") else self.cors_origin_regex

    @property
    def worker_concurrency(self) -> int:
        """Jobs a RunPod worker takes at once (its concurrency_modifier)."""
        return self.job_concurrency or 2

    @property
    def pod_concurrency(self) -> int:
        """Tasks the shim's pod mode keeps in flight."""
        return self.job_concurrency or 4

    @property
    def undelivered_folder(self) -> Path:
        if self.undelivered_dir is not None:
            return self.undelivered_dir
        volume = Path(RUNPOD_VOLUME)
        return volume / "acestep-undelivered" if volume.is_dir() else Path("/tmp/acestep-undelivered")

    @property
    def converted_folders(self) -> list[Path]:
        """Where conversions of cached checkpoints are kept, the first writable one taken."""
        if self.converted_dir is not None:
            return [] if str(self.converted_dir).lower() == "none" else [self.converted_dir]
        volume = Path(RUNPOD_VOLUME)  # a network volume is a mount; without one it is a folder of the container
        kept = volume / "acestep-converted"
        return [kept] if os.path.ismount(volume) and writable_folder(kept) else []

    @property
    def lora_folder(self) -> Path | None:
        if self.lora_dir is not None:
            return self.lora_dir
        volume = Path(RUNPOD_VOLUME) / "loras"
        return volume if volume.is_dir() else None

    @property
    def lora_max_bytes(self) -> int:
        return self.lora_max_mb * 1024 * 1024

    @property
    def lora_cache_bytes(self) -> int:
        return self.lora_cache_mb * 1024 * 1024

    @property
    def env_bucket_configured(self) -> bool:
        return bool(self.bucket_name and self.bucket_access_key_id and self.bucket_secret_access_key)
