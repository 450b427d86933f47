"""Volumes: named POSIX namespaces, each with its protection policy, compression and block size.

Layout under the data directory: ``volumes/NAME/volume.json`` (this config) and
``volumes/NAME/meta/`` (the volume's rocksdict metadata, :mod:`sofs.metadata`). The protection is
given as chunkstore policy specs: chunks below ``threshold`` bytes use ``small`` (replication),
larger ones ``large`` (erasure coding or replication).
"""

import dataclasses
import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from chunkstore.atomicfile import atomic_write
from chunkstore.errors import PolicyError
from chunkstore.protection.policy import ECPolicy, Protection, ReplicationPolicy, parse_policy

from .errors import VolumeError

DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
DEFAULT_THRESHOLD = 60 * 1024
DEFAULT_ZSTD_LEVEL = 1
DEFAULT_TRASH_S = 7 * 86400
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CONFIG_VERSION = 1


@dataclasses.dataclass(frozen=True)
class VolumeConfig:
    """A volume's settings, fixed at creation (the block size and policies shape stored data)."""

    name: str
    uuid: str
    created: float
    small_policy: str = "cos2"
    large_policy: str = "ec4+2"
    threshold: int = DEFAULT_THRESHOLD
    zstd_level: int = DEFAULT_ZSTD_LEVEL
    block_size: int = DEFAULT_BLOCK_SIZE
    trash_s: int = DEFAULT_TRASH_S  # how long deleted files stay in the trash (0: no trash)

    def protection(self) -> Protection:
        small = parse_policy(self.small_policy)
        if not isinstance(small, ReplicationPolicy):
            raise PolicyError("the small-object policy must be a ReplicationPolicy")
        return Protection(small, parse_policy(self.large_policy), self.threshold)

    @property
    def compression(self) -> str:
        return f"zstd:{self.zstd_level}" if self.zstd_level else "none"

    def to_json(self) -> str:
        return json.dumps({"version": _CONFIG_VERSION, **dataclasses.asdict(self)}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "VolumeConfig":
        """Parse ``volume.json``; VolumeError (saying which field) for a document that is not
        this version's config: not JSON, an unknown version, a missing or unknown field, a
        field of the wrong type, or a value no volume can have."""
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise VolumeError(f"volume.json is not JSON: {e}") from None
        if not isinstance(raw, dict):
            raise VolumeError(f"volume.json holds {type(raw).__name__}, not an object")
        raw = dict(raw)
        if raw.pop("version", None) != _CONFIG_VERSION:
            raise VolumeError("volume.json has an unknown version")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            raise VolumeError(f"volume.json has unknown field(s): {', '.join(unknown)}")
        missing = [n for n, f in fields.items() if n not in raw
                   and f.default is dataclasses.MISSING]
        if missing:
            raise VolumeError(f"volume.json lacks field(s): {', '.join(missing)}")
        for name, value in raw.items():
            want = _FIELD_TYPES[name]
            if isinstance(value, bool) or not isinstance(value, want):
                names = " or ".join(t.__name__ for t in want)
                raise VolumeError(f"volume.json: {name} must be {names}, not "
                                  f"{type(value).__name__} ({value!r})")
        config = cls(**raw)
        config.validate()
        return config

    def validate(self) -> None:
        """VolumeError for a value no volume can have (bad name, uuid, sizes or levels)."""
        if not _NAME.match(self.name):
            raise VolumeError(f"bad volume name {self.name!r}: use letters, digits, '.', '_', "
                              "'-' (at most 64, starting with a letter or digit)")
        try:
            uuid.UUID(self.uuid)
        except ValueError:
            raise VolumeError(f"volume uuid {self.uuid!r} is not a UUID") from None
        bs = self.block_size
        if bs < 64 * 1024 or bs > 64 * 1024 * 1024 or bs & (bs - 1):
            raise VolumeError("block size must be a power of two between 64 KiB and 64 MiB")
        if not 0 <= self.zstd_level <= 22:
            raise VolumeError("zstd level must be between 0 (off) and 22")
        if self.threshold < 0:
            raise VolumeError("threshold must not be negative")
        if self.trash_s < 0:
            raise VolumeError("the trash time must not be negative")


# the JSON types each field accepts (a float field takes an integer too; never a bool)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "uuid": (str,), "created": (int, float), "small_policy": (str,),
    "large_policy": (str,), "threshold": (int,), "zstd_level": (int,), "block_size": (int,),
    "trash_s": (int,),
}


def volumes_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "volumes"


def volume_dir(data_dir: Path, name: str) -> Path:
    return volumes_dir(data_dir) / name


def protection_for(ec: str | None, cos: int | None) -> tuple[str, str]:
    """(small, large) policy specs from the CLI's ``--ec K+M`` / ``--cos N`` choice.

    ``--ec K+M`` replicates small chunks with CoS M (M+1 copies, so they survive as many losses as
    the coded ones); ``--cos N`` replicates everything with N+1 copies.
    """
    if ec and cos is not None:
        raise VolumeError("choose either --ec or --cos, not both")
    if cos is not None:
        spec = f"cos{cos}"
        parse_policy(spec)
        return spec, spec
    ec = ec or "4+2"
    large = parse_policy(f"ec{ec}")
    if not isinstance(large, ECPolicy):
        raise VolumeError(f"--ec wants K+M, got {ec!r}")
    # small chunks survive as many losses as coded ones (capped at the most copies we keep)
    small = f"cos{min(large.m, 5)}"
    parse_policy(small)
    # pin the backend: fragments from different backends do not decode each other
    return small, f"ec{large.k}+{large.m}:{large.backend}"


def create_volume(data_dir: Path, name: str, *, small_policy: str = "cos2",
                  large_policy: str = "ec4+2", zstd_level: int = DEFAULT_ZSTD_LEVEL,
                  block_size: int = DEFAULT_BLOCK_SIZE,
                  trash_s: int = DEFAULT_TRASH_S,
                  announce: Callable[[VolumeConfig], None] | None = None) -> VolumeConfig:
    """Create a volume's directory and config; the metadata DB is made on first open.
    ``announce`` (the new config) runs once it is valid and before anything is made, so
    that if it fails (a networked cluster recording the volume's width in etcd) no volume
    exists."""
    config = VolumeConfig(name=name, uuid=str(uuid.uuid4()), created=time.time(),
                          small_policy=small_policy, large_policy=large_policy,
                          zstd_level=zstd_level, block_size=block_size, trash_s=trash_s)
    config.validate()
    config.protection()  # validates both policies
    vdir = volume_dir(data_dir, name)
    if vdir.exists():
        raise VolumeError(f"volume {name!r} already exists")
    if announce is not None:
        announce(config)
    volumes_dir(data_dir).mkdir(parents=True, exist_ok=True)
    try:
        vdir.mkdir()
    except FileExistsError:
        raise VolumeError(f"volume {name!r} already exists") from None
    save_volume(data_dir, config)
    return config


def save_volume(data_dir: Path, config: VolumeConfig) -> None:
    """Write (or replace) the volume's ``volume.json``, atomically and durably."""
    atomic_write(volume_dir(data_dir, config.name) / "volume.json", config.to_json())


def load_volume(data_dir: Path, name: str) -> VolumeConfig:
    path = volume_dir(data_dir, name) / "volume.json"
    try:
        return VolumeConfig.from_json(path.read_text())
    except FileNotFoundError:
        raise VolumeError(f"no volume named {name!r} under {data_dir}") from None
    except (VolumeError, ValueError) as e:
        raise VolumeError(f"{path}: unreadable volume config: {e}") from e


def list_volumes(data_dir: Path) -> list[VolumeConfig]:
    vdir = volumes_dir(data_dir)
    if not vdir.is_dir():
        return []
    return [load_volume(data_dir, p.name) for p in sorted(vdir.iterdir())
            if (p / "volume.json").is_file()]


def list_volume_names(data_dir: Path) -> list[str]:
    vdir = volumes_dir(data_dir)
    # ".deleting-UUID" directories are volumes being deleted (sofs.volumedelete): not listed
    return sorted(p.name for p in vdir.iterdir()
                  if not p.name.startswith(".") and (p / "volume.json").is_file()) \
        if vdir.is_dir() else []
