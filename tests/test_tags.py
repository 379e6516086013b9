"""Tags and lyrics of real files: FFmpeg writes real MP3/FLAC/Ogg/M4A audio, mutagen writes the tags (lyrics in
tags and in `.lrc` / `.txt` sidecars, junk included), and the builder's rows carry what the tags say."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from datasets import load_dataset
from mutagen.flac import FLAC, Picture
from mutagen.id3 import APIC, COMM, ID3, TALB, TCON, TDRC, TIT2, TPE1, USLT
from mutagen.mp4 import MP4, MP4FreeForm
from mutagen.oggvorbis import OggVorbis

import build_dataset
from music_clip_common.tags import read_tags, strip_lrc

LRC = "[ar:Ogg Artist]\n[ti:Ogg Title]\n[00:01.00]First line of the ogg song\n[00:02.50]<00:02.50>Second <00:03.00>line\n"


def _audio(path: Path, frequency: int, codec: list[str]) -> Path:
    """4 s of a tone plus pink noise (so no two files share their audio), encoded by FFmpeg."""
    source = f"sine=frequency={frequency}:duration=4"
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-f", "lavfi", "-i",
           "anoisesrc=color=pink:amplitude=0.05:duration=4", "-filter_complex", "amix=inputs=2", *codec, str(path)]  # fmt: skip
    subprocess.run(cmd, check=True)
    return path


@pytest.fixture(scope="module")
def tagged_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tagged")
    mp3 = _audio(root / "01_track.mp3", 330, ["-c:a", "libmp3lame", "-b:a", "64k"])
    id3 = ID3()
    id3.add(TIT2(encoding=3, text="MP3 Title"))
    id3.add(TPE1(encoding=0, text="BeyoncÃ©"))  # UTF-8 stored as Latin-1 by an old tagger
    id3.add(TALB(encoding=3, text="MP3 Album"))
    id3.add(TCON(encoding=3, text="Indie Rock"))
    id3.add(TDRC(encoding=3, text="2019"))
    id3.add(USLT(encoding=3, lang="eng", desc="", text="Words of the mp3 song\nsecond line"))
    id3.add(COMM(encoding=0, lang="eng", desc="", text="".join(map(chr, range(32))) * 4))  # binary junk
    id3.add(APIC(encoding=3, mime="image/png", type=3, desc="cover", data=b"\x89PNG" + bytes(5000)))
    id3.save(mp3)

    flac = _audio(root / "02_track.flac", 440, ["-c:a", "flac"])
    tags = FLAC(flac)
    tags.update({"TITLE": "FLAC Title", "ARTIST": "FLAC Artist", "GENRE": ["Punk", "Garage Rock"],
                 "UNSYNCEDLYRICS": "Words of the flac song", "DATE": "2001-05-03"})  # fmt: skip
    tags["COMMENT"] = "x" * 100_000  # huge
    picture = Picture()
    picture.data = bytes(2000)
    tags.add_picture(picture)
    tags.save()

    ogg = _audio(root / "03_track.ogg", 550, ["-c:a", "libvorbis"])
    tags = OggVorbis(ogg)
    tags.update({"TITLE": "Ogg Title", "ARTIST": "Ogg Artist", "GENRE": "Hip-Hop"})
    tags.save()
    (root / "03_track.lrc").write_text(LRC, encoding="utf-8")

    m4a = _audio(root / "04_track.m4a", 660, ["-c:a", "aac", "-b:a", "64k"])
    tags = MP4(m4a)
    tags.update({"©nam": ["M4A Title"], "©ART": ["M4A Artist"], "©gen": ["Country"],
                 "©lyr": ["Words of the m4a song"],
                 "----:com.apple.iTunes:junk": [MP4FreeForm(bytes(range(256)) * 8)]})  # fmt: skip
    tags.save()

    _audio(root / "untagged_song.wav", 770, ["-c:a", "pcm_s16le"])
    (root / "untagged_song.txt").write_bytes("Words from a text file, caf\xe9".encode("cp1252"))
    (root / "notes.txt").write_text("not audio and not beside any audio file")
    return root


def test_read_tags_of_each_format_with_lyrics_and_junk(tagged_dir: Path) -> None:
    mp3 = read_tags(tagged_dir / "01_track.mp3")
    assert (mp3.title, mp3.artist, mp3.album, mp3.genre, mp3.date) == (
        "MP3 Title", "Beyoncé", "MP3 Album", ["Indie Rock"], "2019"
    )  # fmt: skip
    assert mp3.lyrics == "Words of the mp3 song\nsecond line" and mp3.lyrics_source == "tags"
    assert mp3.comment == "" and any("comment" in n and "control" in n for n in mp3.notes)
    assert any("repaired" in n for n in mp3.notes)

    flac = read_tags(tagged_dir / "02_track.flac")
    assert (flac.title, flac.genre, flac.lyrics, flac.date) == (
        "FLAC Title", ["Punk", "Garage Rock"], "Words of the flac song", "2001-05-03"
    )  # fmt: skip
    assert flac.comment == "" and any("100000 characters" in n for n in flac.notes)

    ogg = read_tags(tagged_dir / "03_track.ogg")
    assert ogg.lyrics == "First line of the ogg song\nSecond line" and ogg.lyrics_source == ".lrc"

    m4a = read_tags(tagged_dir / "04_track.m4a")
    assert (m4a.title, m4a.artist, m4a.genre, m4a.lyrics) == (
        "M4A Title", "M4A Artist", ["Country"], "Words of the m4a song"
    )  # fmt: skip

    wav = read_tags(tagged_dir / "untagged_song.wav")
    assert (wav.title, wav.lyrics, wav.lyrics_source) == ("", "Words from a text file, café", ".txt")


def test_junk_files_give_empty_tags_never_an_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + bytes(range(256)) * 4)
    assert read_tags(garbage).title == ""
    (tmp_path / "empty.flac").write_bytes(b"")
    assert read_tags(tmp_path / "empty.flac").genre == []
    assert read_tags(tmp_path / "missing.ogg").lyrics == ""
    assert strip_lrc("[offset:+100]\n[01:02.03][01:10.00]Chorus\n") == "Chorus"


def test_folder_build_rows_take_title_artist_genre_and_lyrics_from_tags(
    tagged_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    code = build_dataset.main(["--source", "folder", "--audio-dir", str(tagged_dir), "--output", str(out),
                               "--num-proc", "1", "--test-size", "0"])  # fmt: skip
    assert code == 0
    genres = load_dataset(str(out), "genres")["train"].remove_columns(["audio", "mel"])
    captions = load_dataset(str(out), "captions")["train"].remove_columns(["audio", "mel"])
    names = genres.features["genre"].names
    rows = {r["title"]: {**r, "genre": names[r["genre"]]} for r in genres}
    assert {t: (r["artist"], r["genre"], r["tags"], r["lyrics"]) for t, r in rows.items()} == {
        "MP3 Title": ("Beyoncé", "rock", ["Indie Rock"], "Words of the mp3 song\nsecond line"),
        "FLAC Title": ("FLAC Artist", "punk", ["Punk", "Garage Rock"], "Words of the flac song"),
        "Ogg Title": ("Ogg Artist", "hip hop", ["Hip-Hop"], "First line of the ogg song\nSecond line"),
        "M4A Title": ("M4A Artist", "country", ["Country"], "Words of the m4a song"),
    }
    mp3_metadata = json.loads(rows["MP3 Title"]["metadata"])
    assert mp3_metadata["album"] == "MP3 Album" and mp3_metadata["date"] == "2019"
    assert any("comment" in note for note in mp3_metadata["tag_notes"])  # the junk is reported, not stored
    (untagged,) = captions
    assert untagged["title"] == "untagged song" and untagged["lyrics"] == "Words from a text file, café"
    assert "It is a song with lyrics." in untagged["sentences"]
    reasons = [json.loads(line)["reason"] for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert reasons == ["not an audio file extension (.txt)"]  # notes.txt only: sidecars are lyrics
