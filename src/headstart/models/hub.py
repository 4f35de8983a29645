"""Models on the Hugging Face Hub by name (``hf-hub:USER/REPO``, timm's own prefix).

``--arch hf-hub:USER/REPO`` builds the repository's timm model through timm's Hub loader
(its config.json and safetensors weights, the Hugging Face cache first). Every failed Hub
call becomes one line: no network, no such repository, refused, other. Sharing a run
(push, fetch) is ``headstart.share.hub``.
"""

from __future__ import annotations

import os
import re
from typing import Any

from headstart.errors import ArtifactError, ConfigError, HeadstartError

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


def hub_failure(exc: Exception, what: str, cache: bool = True) -> HeadstartError:
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


def hub_model(arch: str, pretrained: bool) -> Any:
    """``--arch hf-hub:USER/REPO``: the repository's timm model, headless (``num_classes=0``),
    through timm's own Hub loader (its config.json, its safetensors weights; the Hugging
    Face cache first). Without the network and the cache: one line saying so."""
    import timm  # headstart's convnet_* are in its registry: headstart.models imported timm_entry

    name, revision = repo_id(arch)
    try:
        return timm.create_model(f"{PREFIX}{name}" + (f"@{revision}" if revision else ""), pretrained=pretrained, num_classes=0)
    except Exception as exc:  # huggingface_hub / timm raise many types; each becomes one line
        failure = hub_failure(exc, f"--arch {PREFIX}{name}")
        if isinstance(failure, NetworkError) or "RepositoryNotFound" in type(exc).__name__:
            raise failure from None
        raise ConfigError(
            f"--arch {PREFIX}{name}: timm cannot build it ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})."
        ) from None
