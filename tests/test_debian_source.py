"""The debian source: reserved packages refused, the filtering rules on real audio, a real .deb built with
dpkg-deb (checksum, newer version, unpack), and (registry) a real small build from the Debian mirror."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from datasets import get_dataset_config_names, load_dataset

import build_dataset
from music_clip_data.sources import debian_packages as packages
from music_clip_data.sources.debian_filters import (
    DUPLICATE_SIMILARITY,
    exclusion_reason,
    fingerprint,
    midi_render_stems,
    near_duplicates,
    similarity,
)
from music_clip_data.sources.debian_packages import (
    PackageEntry,
    ReservedPackageError,
    check_deb,
    fetch_deb,
    load_manifest,
    music_files,
    refuse_reserved,
    select_packages,
    sha256_of,
    unpack,
)

RESERVED = [
    "wesnoth-1.16-music",
    "wesnoth-music",
    "warzone2100-music",
    "nexuiz-music",
    "singularity-music",
    "fretsonfire-songs-muldjord",
    "fretsonfire-songs-sectoid",
]


def _entry(name: str = "tiny-music", version: str = "1.0-1", sha256: str = "0" * 64, **kw) -> PackageEntry:
    defaults = dict(
        size="small", music=("usr/share/tiny/music/*",), license="CC-BY-4.0", attribution="A. Composer"
    )
    return PackageEntry(name, version, sha256, game="Tiny", description="a test", **{**defaults, **kw})


@pytest.mark.parametrize("name", RESERVED)
def test_reserved_packages_are_refused_before_any_download(name: str, monkeypatch, tmp_path: Path) -> None:
    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"a reserved package reached a subprocess: {args}")

    monkeypatch.setattr(packages.subprocess, "run", no_subprocess)
    with pytest.raises(ReservedPackageError, match="reserved"):
        refuse_reserved(name)
    with pytest.raises(ReservedPackageError):
        fetch_deb(_entry(name), tmp_path)
    with pytest.raises(ReservedPackageError):
        select_packages(load_manifest(), "full", names=[name])
    manifest = json.loads(packages.MANIFEST.read_text())
    manifest["packages"][name] = next(iter(manifest["packages"].values()))
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    with pytest.raises(ReservedPackageError):
        load_manifest(tmp_path / "m.json")


def test_shipped_manifest_sizes_nest_and_small_is_a_modest_download() -> None:
    entries = load_manifest()
    small, quick, full = (select_packages(entries, size) for size in packages.SIZES)
    assert set(map(id, small)) <= set(map(id, quick)) <= set(map(id, full)) and len(small) >= 3
    raw = json.loads(packages.MANIFEST.read_text())["packages"]
    assert sum(raw[e.name]["deb_bytes"] for e in small) < 150e6
    heldout = select_packages(entries, "full", part="heldout")
    pretrain = select_packages(entries, "full", part="pretrain")
    assert heldout and pretrain and not {e.name for e in heldout} & {e.name for e in pretrain}


def test_every_full_package_names_licence_and_attribution_of_its_music(tmp_path: Path) -> None:
    """Manifest-level (no download): each package of full, and each per-file entry, carries a licence and a
    composer; a blanked attribution or licence is refused when the manifest is loaded."""
    full, quick = select_packages(load_manifest(), "full"), select_packages(load_manifest(), "quick")
    assert len(select_packages(load_manifest(), "full", part="pretrain")) >= len(quick) + 5
    for entry in full:
        assert entry.license.strip() and entry.attribution.strip() and entry.music, entry.name
        for pattern, facts in entry.files.items():
            assert facts["attribution"].strip() and facts.get("license", entry.license).strip(), pattern
            assert entry.file_facts(pattern.replace("*", "x"))["attribution"] == facts["attribution"]
    raw = json.loads(packages.MANIFEST.read_text(encoding="utf-8"))
    naev = raw["packages"]["naev-data"]
    blanks = [
        ("files", "*/music/ambiphonic.ogg", "attribution"),
        ("files", "*/music/motherload.ogg", "license"),
        (None, None, "attribution"),
        (None, None, "license"),
    ]
    for group, pattern, key in blanks:
        broken = json.loads(json.dumps(raw))
        target = broken["packages"]["naev-data"]
        target = target[group][pattern] if group else target
        target[key] = " "
        (tmp_path / "m.json").write_text(json.dumps(broken), encoding="utf-8")
        with pytest.raises(ValueError, match=f"naev-data.*{key}"):
            load_manifest(tmp_path / "m.json")
    assert naev["files"]["*/music/ambiphonic.ogg"] == {"attribution": "Zeropage", "license": "CC-BY-3.0"}


def test_exclusion_rules() -> None:
    paths = ["music/theme.mid", "music/theme.ogg", "music/battle.ogg", "music/loop.xm"]
    stems = midi_render_stems(paths)
    assert exclusion_reason("music/theme.mid", None, stems) == "MIDI score (not a recording)"
    assert "rendered from the MIDI" in exclusion_reason("music/theme.ogg", 95.0, stems)
    assert "under 20 s" in exclusion_reason("music/battle.ogg", 12.5, stems)
    assert exclusion_reason("music/battle.ogg", 95.0, stems) is None
    assert exclusion_reason("music/loop.xm", 120.0, stems) is None  # tracker modules are kept
    assert "loops forever" in exclusion_reason("music/loop.xm", 3600.0, stems)
    assert "no duration" in exclusion_reason("music/broken.ogg", None, stems)


def test_near_duplicates_on_real_audio(immich_tracks: list[Path], tmp_path: Path) -> None:
    """A lossy re-encode of a real track is its near-duplicate; other real tracks are not."""
    original, other, third = immich_tracks[0], immich_tracks[5], immich_tracks[12]
    copy = tmp_path / "copy.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(original), "-b:a", "64k", str(copy)], check=True)
    prints = {
        name: fingerprint(path) for name, path in [("a", original), ("b", other), ("a2", copy), ("c", third)]
    }
    assert similarity(prints["a"], prints["a2"]) >= DUPLICATE_SIMILARITY
    assert similarity(prints["a"], prints["b"]) < DUPLICATE_SIMILARITY
    duplicates = near_duplicates(prints)
    assert list(duplicates) == ["a2"] and duplicates["a2"][0] == "a"


def _build_deb(tmp_path: Path, version: str) -> Path:
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: tiny-music\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        "Description: tiny\n"
    )
    music = root / "usr/share/tiny/music"
    music.mkdir(parents=True)
    for name in ("theme.ogg", "theme.mid", "notes.txt"):
        (music / name).write_bytes(b"x")
    with zipfile.ZipFile(music / "more.pk3", "w") as pk3:  # a game's music archive, as in ufoai-music
        pk3.writestr("music/battle.ogg", b"y")
    deb = tmp_path / f"tiny-music_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True, capture_output=True
    )
    return deb


def test_checksum_newer_version_and_unpack_with_a_real_deb(tmp_path: Path) -> None:
    deb = _build_deb(tmp_path, "1.0-1")
    with pytest.raises(ValueError, match="does not match"):
        check_deb(_entry(version="1.0-1"), deb)
    assert check_deb(_entry(version="1.0-1", sha256=sha256_of(deb)), deb)["version"] == "1.0-1"
    with pytest.warns(UserWarning, match="no longer has 0.9-1; using 1.0-1"):
        fact = check_deb(_entry(version="0.9-1"), deb)
    assert fact["manifest_version"] == "0.9-1" and fact["sha256"] == sha256_of(deb)
    root = unpack(deb, tmp_path / "cache", ("usr/share/tiny/music/more.pk3",))
    assert unpack(deb, tmp_path / "cache") == root  # once
    found = [rel for rel, _ in music_files(_entry(exclude=("*.txt", "*.pk3")), root)]
    assert found == [
        "usr/share/tiny/music/more.pk3.d/music/battle.ogg",
        "usr/share/tiny/music/theme.mid",
        "usr/share/tiny/music/theme.ogg",
    ]


def test_debian_flags_are_refused_for_other_sources(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        build_dataset.parse_args(
            ["--source", "folder", "--audio-dir", str(tmp_path), "--output", "x", "--packages", "a"]
        )


@pytest.fixture(scope="module")
def small_debian_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small build, fetched from the Debian mirror (a shared cache via MUSICCLIP_DEBIAN_CACHE if set)."""
    os.environ.setdefault("MUSICCLIP_DEBIAN_CACHE", str(tmp_path_factory.mktemp("debian_cache")))
    out = tmp_path_factory.mktemp("ds") / "debian_small"
    args = [
        "--source",
        "debian",
        "--size",
        "small",
        "--output",
        str(out),
        "--max-seconds",
        "30",
        "--num-proc",
        "2",
    ]
    assert build_dataset.main(args) == 0
    return out


def _rows(folder: Path) -> list[dict]:
    rows = []
    for config in get_dataset_config_names(str(folder)):  # genres is absent when no track has a label
        for split in load_dataset(str(folder), config).values():
            rows += split.remove_columns(["audio", "mel"]).to_list()
    return rows


@pytest.mark.registry
@pytest.mark.slow
def test_small_debian_build_has_package_license_attribution(small_debian_build: Path) -> None:
    rows = _rows(small_debian_build)
    packages_seen = {r["package"] for r in rows}
    assert len(rows) >= 50 and len(packages_seen) >= 3
    assert all(r["license"] and r["attribution"] and r["source"] == "debian" for r in rows)
    for name in packages_seen:
        refuse_reserved(name)  # raises for a reserved package
    card = (small_debian_build / "README.md").read_text()
    assert "### Debian packages" in card and all(name in card for name in packages_seen)


@pytest.mark.registry
@pytest.mark.slow
def test_small_debian_build_has_descriptors(small_debian_build: Path) -> None:
    rows = _rows(small_debian_build)
    assert all(r["tempo_bpm"] is not None and r["tempo_bpm"] > 0 and r["key"] for r in rows)
    # A recording's template caption says its measured key (its own sentences cannot know it).
    from music_clip_data.descriptors import key_words

    captioned = [r for r in rows if r.get("caption_source") == "template"]
    assert captioned and all(key_words(r["key"]) in r["caption"] for r in captioned)
