"""Service settings: command-line flags and ``VQDB_*`` environment variables (pydantic-settings).

Every field can be set as ``VQDB_<FIELD>`` (e.g. ``VQDB_API_KEY``, ``VQDB_DATA``, ``VQDB_PORT``);
``vqdb serve`` flags override the environment.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1 << 20
GiB = 1 << 30


class Settings(BaseSettings):
    """Configuration of one ``vqdb serve`` process."""

    model_config = SettingsConfigDict(env_prefix="VQDB_", extra="ignore", populate_by_name=True)

    data: Path = Field(
        Path("vqdb-data"),
        validation_alias=AliasChoices("data", "VQDB_DATA", "VQDB_DATA_DIR"),
        description="data directory (collections/, snapshots/)",
    )
    host: str = Field("127.0.0.1", description="bind address")
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = Field(None, description="admin key; turns authentication on")
    keys_file: Path | None = Field(None, description="file of '<scope> <key>' lines; turns authentication on")
    demo: bool = Field(
        True, description="create the 'wordnet' demo collection on first start with an empty data dir"
    )
    max_body_bytes: int = Field(
        16 * MiB, gt=0, description="largest JSON request body (bulk: use /points/b64 or /points/arrow)"
    )
    max_bulk_bytes: int = Field(1024 * MiB, gt=0, description="largest bulk-ingest / snapshot-upload body")
    max_k: int = Field(10_000, gt=0, description="largest k of one search")
    max_dim: int = Field(
        4096,
        ge=2,
        le=65_536,
        description="largest dimension of a new collection (a dense "
        "rotation costs d^2 memory and d^3 time to draw)",
    )
    max_batch: int = Field(1_024, gt=0, description="most query vectors in one batch search")
    max_hits: int = Field(
        100_000, gt=0, description="most hits one search may return: k x number of query vectors"
    )
    max_response_bytes: int = Field(
        64 * MiB, gt=0, description="largest search / get response (vectors and payloads included)"
    )
    max_inflate_ratio: float = Field(
        100.0,
        ge=1,
        description="a compressed snapshot or Arrow body may unpack to at most this many times its own "
        "size (and always to max_body_bytes)",
    )
    max_snapshot_bytes: int = Field(
        64 * GiB, gt=0, description="largest unpacked size of a restored or uploaded snapshot"
    )
    max_snapshot_members: int = Field(
        100_000, gt=0, description="most files and directories in a restored or uploaded snapshot"
    )
    header_timeout: float = Field(
        10.0, gt=0, description="seconds a connection has to send a request's headers (and its first byte)"
    )
    body_timeout: float = Field(
        20.0, gt=0, description="seconds a request has to send its body, plus 1 s per body_min_rate bytes"
    )
    body_min_rate: int = Field(
        1024, gt=0, description="bytes per second that extend body_timeout (slower bodies are cut with 408)"
    )
    keep_alive_timeout: float = Field(
        5.0, gt=0, description="seconds an idle keep-alive connection stays open"
    )
    max_connections: int | None = Field(
        None,
        gt=0,
        description="most open client connections (default: from the file-descriptor limit); at the "
        "limit the longest-idle connection is closed for a new one, or the new one gets 503",
    )
    max_open_collections: int = Field(
        128,
        gt=0,
        description="collections whose index is open at once (least recently used ones are closed; "
        "each open index holds 2 file descriptors)",
    )
    metrics_public: bool = Field(
        False, description="serve /metrics without a key even when keys are configured"
    )
    blas_threads: int = Field(
        1,
        ge=0,
        description="BLAS threads per call in `vqdb serve` (requests already run "
        "in parallel; 0 = the library default)",
    )
    readers: int = Field(
        0,
        ge=0,
        le=64,
        description="search reader processes: searches are answered from read-only snapshots in N "
        "processes besides the serving one (more cores busy; writes stay read-your-writes); 0 = none",
    )
    ray_address: str | None = Field(
        None,
        description="Ray cluster address ('auto', 'host:6379', 'ray://host:10001', or 'local' for a private local cluster bound to 127.0.0.1): collections created with shards > 1 are sharded over it",
    )
    log_level: str = Field("info")
    http: Literal["auto", "httptools", "h11"] = Field(
        "auto", description="HTTP parser of `vqdb serve` (auto: httptools when installed, else h11)"
    )
    loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto", description="event loop of `vqdb serve` (auto: uvloop when installed, else asyncio)"
    )

    @property
    def auth_enabled(self) -> bool:
        return self.api_key is not None or self.keys_file is not None

    @property
    def collections_dir(self) -> Path:
        return self.data / "collections"

    @property
    def snapshots_dir(self) -> Path:
        return self.data / "snapshots"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (``127.0.0.0/8``, ``::1``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
