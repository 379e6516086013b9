"""Debian packages of real music: the manifest, the reserved list, `apt-get download` + checksum, `dpkg-deb -x`.

Nothing is installed: each .deb is downloaded into a cache (`~/.cache/musicclip/debian`, or
`$MUSICCLIP_DEBIAN_CACHE`), checked against the manifest's sha256 and unpacked into its own folder. The mirror
keeps only current versions: when the manifest's version is gone, the current one is used with a warning and
recorded (the card lists it); a file of the manifest's version with another checksum is refused.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

MANIFEST = Path(__file__).with_name("debian_manifest.json")
SIZES = ("small", "quick", "full")  # each size holds the packages of the sizes before it
# Kept for an independent evaluation of real music the project never trained on: never fetched, never read.
RESERVED_PACKAGES = (
    "wesnoth-*music",  # wesnoth-music and every versioned wesnoth-1.NN-music
    "warzone2100-music",
    "nexuiz-music",
    "singularity-music",
    "fretsonfire-songs-muldjord",
    "fretsonfire-songs-sectoid",
)


class ReservedPackageError(ValueError):
    """A package kept for the independent evaluation was asked for."""


def refuse_reserved(package: str) -> None:
    if any(fnmatch.fnmatchcase(package, pattern) for pattern in RESERVED_PACKAGES):
        raise ReservedPackageError(
            f"{package} is reserved for an independent evaluation of real music and is never fetched or used "
            f"(reserved: {', '.join(RESERVED_PACKAGES)})"
        )


@dataclass(frozen=True)
class PackageEntry:
    name: str
    version: str
    sha256: str
    size: str  # the smallest build size that holds it
    music: tuple[str, ...]  # fnmatch patterns of its music files, relative to the unpacked root
    license: str
    attribution: str
    game: str
    description: str
    heldout: bool = False  # held out of pretraining: the real-music evaluation's packages
    exclude: tuple[str, ...] = ()
    archives: tuple[str, ...] = ()  # zip archives in the package (e.g. a game's .pk3) unpacked to `<path>.d/`
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # pattern → per-file license/attribution

    def file_facts(self, relative: str) -> dict[str, str]:
        """License and attribution of one music file: the first matching per-file entry, else the package's."""
        for pattern, facts in self.files.items():
            if fnmatch.fnmatchcase(relative, pattern):
                return {"license": self.license, "attribution": self.attribution, **facts}
        return {"license": self.license, "attribution": self.attribution}


FILE_FACTS = ("license", "attribution")  # what a per-file entry may set


def check_licensing(path: Path, name: str, spec: dict) -> None:
    """Every music file must carry a licence and an attribution (CC-BY needs the composer named): the package's
    own, and each per-file entry's, are non-empty; a per-file entry sets nothing else."""
    for key in FILE_FACTS:
        if not str(spec.get(key, "")).strip():
            raise ValueError(f"{path}: {name} has no {key}; every package names the licence and composer")
    for pattern, facts in spec.get("files", {}).items():
        unknown = set(facts) - set(FILE_FACTS)
        if unknown or not str(facts.get("attribution", "")).strip():
            raise ValueError(
                f"{path}: {name} files[{pattern!r}] must give a non-empty attribution (and may give a license), "
                f"got {facts!r}"
            )
        if "license" in facts and not str(facts["license"]).strip():
            raise ValueError(f"{path}: {name} files[{pattern!r}] has an empty license")


def load_manifest(path: Path = MANIFEST) -> list[PackageEntry]:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    entries = []
    for name, spec in raw["packages"].items():
        refuse_reserved(name)
        if spec["size"] not in SIZES:
            raise ValueError(f"{path}: {name} has size {spec['size']!r}; use one of {SIZES}")
        check_licensing(path, name, spec)
        required = {key: spec[key] for key in ("version", "sha256", "size", "license", "attribution", "game")}
        optional = {key: tuple(spec.get(key, ())) for key in ("exclude", "archives")}
        entries.append(
            PackageEntry(
                name=name,
                music=tuple(spec["music"]),
                description=spec["description"],
                **required,
                **optional,
                heldout=bool(spec.get("heldout", False)),
                files=dict(spec.get("files", {})),
            )  # fmt: skip
        )
    return entries


def select_packages(
    entries: list[PackageEntry], size: str, part: str = "all", names: list[str] | None = None
) -> list[PackageEntry]:
    """The packages of a build size; `part` keeps the pretraining or the held-out ones; `names` picks some."""
    if size not in SIZES:
        raise ValueError(f"--size {size!r}: the debian source has sizes {SIZES}")
    for name in names or []:
        refuse_reserved(name)
    known = {e.name for e in entries}
    unknown = sorted(set(names or []) - known)
    if unknown:
        raise ValueError(
            f"--packages {unknown}: not in the manifest {MANIFEST.name} (known: {sorted(known)})"
        )
    chosen = [e for e in entries if SIZES.index(e.size) <= SIZES.index(size)]
    if part != "all":
        chosen = [e for e in chosen if e.heldout == (part == "heldout")]
    return [e for e in chosen if not names or e.name in names]


def default_cache() -> Path:
    return Path(os.environ.get("MUSICCLIP_DEBIAN_CACHE", "~/.cache/musicclip/debian")).expanduser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def deb_version(deb: Path) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
    ).stdout.strip()


def _apt_download(target: str, into: Path) -> Path | None:
    result = subprocess.run(["apt-get", "download", target], cwd=into, capture_output=True, text=True)
    debs = sorted(into.glob("*.deb"))
    return debs[0] if result.returncode == 0 and debs else None


def check_deb(entry: PackageEntry, deb: Path) -> dict:
    """The fetched file's facts; a file of the manifest's version with another checksum is refused."""
    version, digest = deb_version(deb), sha256_of(deb)
    if version == entry.version and digest != entry.sha256:
        raise ValueError(
            f"{deb.name}: sha256 {digest} does not match the manifest's {entry.sha256} for {entry.name} "
            f"{entry.version}; refusing it (corrupt download or a changed archive)"
        )
    fact = {"package": entry.name, "version": version, "sha256": digest, "bytes": deb.stat().st_size}
    if version != entry.version:
        fact["manifest_version"] = entry.version
        warnings.warn(
            f"{entry.name}: the mirror no longer has {entry.version}; using {version} (sha256 {digest})",
            stacklevel=2,
        )
    return fact


def fetch_deb(entry: PackageEntry, cache: Path) -> tuple[Path, dict]:
    """The package's .deb in the cache (downloaded once, shared by builds) and its checked facts."""
    refuse_reserved(entry.name)
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    with FileLock(str(debs / f"{entry.name}.lock")):
        cached = sorted(debs.glob(f"{entry.name}_*.deb"))
        if cached:
            return cached[-1], check_deb(entry, cached[-1])
        with tempfile.TemporaryDirectory(dir=debs) as tmp:
            deb = _apt_download(f"{entry.name}={entry.version}", Path(tmp)) or _apt_download(
                entry.name, Path(tmp)
            )
            if deb is None:
                raise RuntimeError(
                    f"apt-get download {entry.name} failed: is apt configured with Debian main "
                    "(run `apt-get update`)?"
                )
            fact = check_deb(entry, deb)
            final = debs / deb.name
            deb.replace(final)
    return final, fact


def unpack(deb: Path, cache: Path, archives: tuple[str, ...] = ()) -> Path:
    """`dpkg-deb -x` into `cache/unpacked/<deb name>/` once (atomically: a half-unpacked tree never shows); the
    zip `archives` inside it are unpacked beside themselves, into `<archive>.d/`."""
    target = cache / "unpacked" / deb.stem
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.is_dir():
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{deb.stem}-"))
            try:
                subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True, capture_output=True)
                for archive in archives:
                    with zipfile.ZipFile(
                        tmp / archive
                    ) as zipped:  # extractall keeps members inside the folder
                        zipped.extractall(tmp / f"{archive}.d")
                tmp.rename(target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def music_files(entry: PackageEntry, root: Path) -> list[tuple[str, Path]]:
    """(path inside the package, file) for every file matching the entry's music patterns and no exclude."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if any(fnmatch.fnmatchcase(relative, p) for p in entry.music) and not any(
            fnmatch.fnmatchcase(relative, p) for p in entry.exclude
        ):
            found.append((relative, path))
    return found
