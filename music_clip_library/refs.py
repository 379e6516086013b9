"""Where a model or library lives: a local path, or a Hub repo named explicitly (`hub:owner/name@revision`).

Shared by `music-clip` and the Space (which imports it through `space/config.py`)."""

from __future__ import annotations

from pathlib import Path

# A Hub repo is only ever asked for explicitly: `hub:owner/name@revision`. Anything else is a local path, so a
# typo (`runs/supcon`) is "not found" instead of a download whose code then runs (trust_remote_code).
HUB_PREFIX = "hub:"


def looks_like_hub_id(ref: str) -> bool:
    """`hub:owner/name[@revision]`: loaded from the Hub (or its cache) instead of disk."""
    return ref.startswith(HUB_PREFIX)


def locate(ref: str, remote_code: bool) -> tuple[str, str | None]:
    """(local path or Hub repo id, revision). A local path must exist; a Hub model, whose code runs here, must
    name the revision (commit, tag or branch) the user trusts."""
    if not looks_like_hub_id(ref):
        if not Path(ref).exists():
            raise FileNotFoundError(
                f"`{ref}` not found (no such file or folder; a Hub repo is written {HUB_PREFIX}owner/name@revision)"
            )
        return ref, None
    repo, _, revision = ref[len(HUB_PREFIX) :].partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"`{ref}`: a Hub repo is written {HUB_PREFIX}owner/name@revision")
    if remote_code and not revision:
        raise ValueError(
            f"`{ref}` runs the repo's own Python code (trust_remote_code): name the revision you trust, "
            f"{HUB_PREFIX}{repo}@<commit sha>"
        )
    return repo, revision or None
