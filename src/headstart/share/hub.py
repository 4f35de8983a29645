"""The Hugging Face Hub: ``headstart push RUN USER/REPO`` and ``hf-hub:USER/REPO`` models.

Push uploads the run's timm-layout export (``headstart.share.timm_layout``) and nothing
else: an allowlist of the four files (weights, config, card, metadata), never checkpoints,
split files, reports, images or anything holding an absolute path. Fetching asks for the
same four names only, so the weights that come back are ``model.safetensors`` (no pickle).
The token comes from where ``huggingface_hub`` looks (``HF_TOKEN``, ``hf auth login``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from headstart.errors import ArtifactError, ConfigError
from headstart.models.hub import PREFIX, NetworkError, hub_failure, is_hub, repo_id
from headstart.share.timm_layout import FILES, META

__all__ = ["PREFIX", "NetworkError", "is_hub", "repo_id", "push_folder", "fetch", "refuse_cache_default"]


@dataclass(frozen=True)
class PushResult:
    repo: str
    url: str
    files: tuple[str, ...]


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
        raise hub_failure(exc, f"Pushing to {name}", cache=False) from None
    return PushResult(name, f"https://huggingface.co/{name}", files)


def fetch(source: str) -> Path:
    """Download (or find in the Hugging Face cache) the allowlisted files of ``hf-hub:USER/REPO``."""
    from huggingface_hub import snapshot_download

    name, revision = repo_id(source)
    try:
        folder = Path(snapshot_download(name, revision=revision, allow_patterns=list(FILES), library_name="headstart"))
    except Exception as exc:
        raise hub_failure(exc, f"{PREFIX}{name}") from None
    if not (folder / META).is_file():
        raise ArtifactError(f"{PREFIX}{name} is not a headstart model (no {META}); to train on it as a base, use --arch {PREFIX}{name}.")
    return folder


def refuse_cache_default(run_dir: Path, out: object) -> None:
    """An export of a model fetched from the Hub needs ``--out``: its folder is the Hugging
    Face cache's, which is not to be written into."""
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE).resolve()
    if out is None and (run_dir.resolve() == cache or cache in run_dir.resolve().parents):
        raise ConfigError(f"{run_dir} is in the Hugging Face cache: give --out FOLDER for the export.")
