"""The Hugging Face Hub: ``headstart push RUN USER/REPO`` and ``hf-hub:USER/REPO`` models.

Push uploads the run's timm-layout export (``headstart.share.timm_layout``) and nothing
else: an allowlist of the four files (weights, config, card, metadata), never checkpoints,
split files, reports, images or anything holding an absolute path. Fetching asks for the
same four names only, so the weights that come back are ``model.safetensors`` (no pickle).
The token comes from where ``huggingface_hub`` looks (``HF_TOKEN``, ``hf auth login``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headstart.errors import ArtifactError, ConfigError, HeadstartError
from headstart.share.timm_layout import FILES, META

PREFIX = "hf-hub:"
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}(@[A-Za-z0-9._/-]{1,128})?$")


class NetworkError(HeadstartError):
    """The Hub could not be reached (offline, DNS, proxy) and the model is not cached."""


def is_hub(source: object) -> bool:
    return str(source).startswith(PREFIX)


def repo_id(name: str) -> tuple[str, str | None]:
    """``USER/REPO[@REVISION]`` (with or without ``hf-hub:``) -> (repo, revision), checked.

    Example:
        >>> repo_id("hf-hub:ann/pets@v1")
        ('ann/pets', 'v1')
    """
    bare = name.removeprefix(PREFIX)
    if not _REPO.match(bare) or ".." in bare:
        raise ConfigError(f"{name!r} is not a Hub repository: give USER/REPO (letters, digits, '.', '_', '-'), e.g. hf-hub:ann/pets.")
    repo, _, revision = bare.partition("@")
    return repo, revision or None


@dataclass(frozen=True)
class PushResult:
    repo: str
    url: str
    files: tuple[str, ...]


def _hub_failure(exc: Exception, what: str, cache: bool = True) -> HeadstartError:
    """One line for a failed Hub call: no network, no such repository, not allowed, other."""
    from huggingface_hub import errors

    if isinstance(exc, (errors.RepositoryNotFoundError, errors.GatedRepoError)):
        return ArtifactError(f"{what}: the repository does not exist or is private (log in with 'hf auth login' or set HF_TOKEN).")
    if isinstance(exc, errors.HfHubHTTPError):
        return ArtifactError(f"{what}: the Hub refused ({str(exc).splitlines()[0][:200]}); check the repository name and your token.")
    if isinstance(exc, (errors.LocalEntryNotFoundError, OSError)) or "connect" in type(exc).__name__.lower():
        why = (
            "HF_HUB_OFFLINE is set"
            if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
            else "huggingface.co could not be reached"
        )
        return NetworkError(f"{what} needs the network: {why}" + (", and it is not in the Hugging Face cache." if cache else "."))
    return ArtifactError(f"{what} failed: {type(exc).__name__}: {str(exc)[:200]}")


def push_folder(folder: Path, repo: str, private: bool = False, message: str = "headstart push") -> PushResult:
    """Upload the allowlisted files of a timm-layout ``folder`` to ``repo`` (created if new)."""
    from huggingface_hub import HfApi

    name, revision = repo_id(repo)
    files = tuple(f for f in FILES if (folder / f).is_file())
    api = HfApi()
    try:
        api.create_repo(name, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(
            repo_id=name,
            folder_path=str(folder),
            allow_patterns=list(files),
            commit_message=message,
            repo_type="model",
            revision=revision,
        )
    except Exception as exc:  # huggingface_hub raises many types; each becomes one line
        raise _hub_failure(exc, f"Pushing to {name}", cache=False) from None
    return PushResult(name, f"https://huggingface.co/{name}", files)


def fetch(source: str) -> Path:
    """Download (or find in the Hugging Face cache) the allowlisted files of ``hf-hub:USER/REPO``."""
    from huggingface_hub import snapshot_download

    name, revision = repo_id(source)
    try:
        folder = Path(snapshot_download(name, revision=revision, allow_patterns=list(FILES), library_name="headstart"))
    except Exception as exc:
        raise _hub_failure(exc, f"{PREFIX}{name}") from None
    if not (folder / META).is_file():
        raise ArtifactError(f"{PREFIX}{name} is not a headstart model (no {META}); to train on it as a base, use --arch {PREFIX}{name}.")
    return folder


def hub_model(arch: str, pretrained: bool) -> Any:
    """``--arch hf-hub:USER/REPO``: the repository's timm model, headless (``num_classes=0``),
    through timm's own Hub loader (its config.json, its safetensors weights; the Hugging
    Face cache first). Without the network and the cache: one line saying so."""
    import timm

    import headstart.models  # noqa: F401  (a headstart convnet on the Hub needs timm's registry entry)

    name, revision = repo_id(arch)
    try:
        return timm.create_model(f"{PREFIX}{name}" + (f"@{revision}" if revision else ""), pretrained=pretrained, num_classes=0)
    except Exception as exc:  # huggingface_hub / timm raise many types; each becomes one line
        failure = _hub_failure(exc, f"--arch {PREFIX}{name}")
        if isinstance(failure, NetworkError) or "RepositoryNotFound" in type(exc).__name__:
            raise failure from None
        raise ConfigError(
            f"--arch {PREFIX}{name}: timm cannot build it ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})."
        ) from None


def refuse_cache_default(run_dir: Path, out: object) -> None:
    """An export of a model fetched from the Hub needs ``--out``: its folder is the Hugging
    Face cache's, which is not to be written into."""
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE).resolve()
    if out is None and (run_dir.resolve() == cache or cache in run_dir.resolve().parents):
        raise ConfigError(f"{run_dir} is in the Hugging Face cache: give --out FOLDER for the export.")
