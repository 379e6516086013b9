"""One audio path (issue 11): the builder, the processor (samples or path) and the Space make the same log-mel;
any rate resamples at bounded cost; the acceptance rules and their messages are the same everywhere."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from conftest import REPO, TINY_WINDOW_SAMPLES, tiny_processor

from audio_music_clip import (
    MAX_SECONDS,
    AudioRejected,
    decode_native,
    load_audio,
    load_waveform,
)
from feature_extraction_music_clip import MusicClipFeatureExtractor
from music_clip_data.decode import DecodeSettings, SkipClip, process_file

sys.path.insert(0, str(REPO / "space"))
from audio_input import UploadError, decode_upload  # noqa: E402
from config import MAX_ANALYSED_SECONDS  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def fe() -> MusicClipFeatureExtractor:
    return MusicClipFeatureExtractor(window_samples=TINY_WINDOW_SAMPLES)


@pytest.fixture(scope="module")
def stereo_files(immich_tracks: list[Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """An immich track (48 kHz stereo Opus) and a 44.1 kHz stereo 16-bit WAV with different channels."""
    out = tmp_path_factory.mktemp("stereo")
    track = immich_tracks[3]
    native, rate = decode_native(track, max_seconds=12.0)
    left, right = soxr.resample(native.T, rate, 44100).T
    wav = out / "written_44k1.wav"
    sf.write(wav, np.stack([left, 0.4 * right[::-1]], axis=1), 44100, subtype="PCM_16")  # L and R unlike
    return [track, wav]


def test_builder_processor_and_space_make_the_same_log_mel(fe, stereo_files, minilm_path):
    processor = tiny_processor(minilm_path)
    processor.feature_extractor = fe
    for path in stereo_files:
        built = process_file(path, fe, DecodeSettings())["rows"][0]["mel"]
        native, rate = decode_native(path)
        assert native.shape[0] == 2 and rate in (44100, 48000)
        # one multichannel recording is a list of one (channels, samples) array: a bare 2-D array is a batch
        from_samples = processor(audio=[native], sampling_rate=rate)["input_features"]
        from_path = processor(audio=str(path))["input_features"]
        from_bytes = processor(audio=path.read_bytes())["input_features"]
        space_wave, note = decode_upload(str(path), fe, MAX_ANALYSED_SECONDS)
        from_space = fe.log_mel(space_wave)
        assert note == ""
        assert from_space.shape == built.shape
        assert np.abs(from_space - built).max() <= 1e-4, path.name
        windows = fe.window([built])["input_features"]
        for name, features in (("samples", from_samples), ("path", from_path), ("bytes", from_bytes)):
            assert features.shape == windows.shape, name
            assert (features - windows).abs().max().item() <= 1e-4, f"{path.name}: {name}"


def test_space_limit_is_the_builder_limit():
    assert MAX_ANALYSED_SECONDS == MAX_SECONDS == DecodeSettings().max_seconds


def test_downmix_is_the_channel_mean_in_any_layout(fe):
    rng = np.random.default_rng(5)
    six = rng.uniform(-0.5, 0.5, (6, SR * 2)).astype(np.float32)
    expected = six.mean(axis=0)
    for layout in (six, six.T, torch.from_numpy(six), (six * 32767).astype(np.int16)):
        np.testing.assert_allclose(load_waveform(layout, SR), expected, atol=1e-4)
    mono_as_stereo = np.stack([expected, expected])
    np.testing.assert_array_equal(load_waveform(mono_as_stereo, SR), load_waveform(expected, SR))


@pytest.mark.parametrize("rate", [1, 2, 97, 8000, 11025, 44101, 96001, 192000, 768000])
def test_every_rate_resamples_to_the_target_length(rate):
    seconds = 3 if rate >= 8000 else 40
    t = np.arange(rate * seconds) / rate
    tone_hz = min(440.0, rate / 4)
    wave = load_waveform((0.5 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32), rate)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.size - seconds * SR) <= 1
    if rate >= 2000:  # the tone survives: its frequency is the spectrum's peak
        spectrum = np.abs(np.fft.rfft(wave[SR // 2 : -SR // 2]))
        peak_hz = spectrum.argmax() * SR / (wave.size - SR)
        assert abs(peak_hz - tone_hz) < 2


def test_rates_beyond_the_supported_range_are_refused():
    with pytest.raises(AudioRejected, match="above the 768000 Hz supported") as err:
        load_waveform(np.zeros(10, np.float32), 768_001)
    assert err.value.reason == "bad_rate"
    with pytest.raises(ValueError, match="sampling_rate must be a positive integer"):
        load_waveform(np.zeros(10, np.float32), 0)
    with pytest.raises(ValueError, match="sampling_rate is needed"):
        load_waveform(np.zeros(10, np.float32))


def run_child(code: str, *args: str) -> dict:
    """Run `code` in a fresh interpreter from the repository; its last stdout line is JSON."""
    run = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


# Runs in a fresh interpreter: ru_maxrss is the process' peak, so the baseline is taken after the imports.
# An address-space cap (current size + 6 GB) only keeps a broken resampler from taking the machine down.
RSS_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    from feature_extraction_music_clip import MusicClipFeatureExtractor
    vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + (6 << 30), resource.RLIM_INFINITY))
    fe = MusicClipFeatureExtractor(window_samples=64000)
    rng = np.random.default_rng(0)
    waves = {rate: rng.uniform(-0.5, 0.5, (2, rate * 10)).astype(np.float32) for rate in (96001, 44101)}
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {}
    for rate, wave in waves.items():
        started = time.perf_counter()
        try:
            out = fe([wave], sampling_rate=rate)  # one stereo recording (a bare 2-D array is a batch)
            result[rate] = {"seconds": time.perf_counter() - started, "windows": int(out["window_mask"].sum())}
        except BaseException as err:
            result[rate] = {"error": f"{type(err).__name__}: {str(err)[:200]}",
                            "seconds": time.perf_counter() - started}
        result[rate]["rss_above_base_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    print(json.dumps(result))
    """
)


def test_odd_rates_cost_little_memory_and_time(tmp_path):
    result = run_child(RSS_CHILD)
    for rate, measured in result.items():
        assert "error" not in measured, (rate, measured)
        assert measured["windows"] == 3, (rate, measured)  # 10 s → 3 windows of 4 s
        assert measured["rss_above_base_mb"] < 500, (rate, measured)
        assert measured["seconds"] < 2.0, (rate, measured)


@pytest.mark.parametrize(
    ("make", "reason", "message"),
    [
        (
            lambda rng: rng.uniform(-1, 1, SR // 10),
            "too_short",
            r"^0\.1 s is too short: at least 1 s is needed",
        ),
        (lambda rng: rng.uniform(-1, 1, 1), "too_short", r"^0\.1 ms is too short: at least 1 s is needed"),
        (lambda rng: np.zeros(SR * 10), "silent", r"^The clip is silent \(digital silence"),
        (
            lambda rng: rng.uniform(-1, 1, SR * 10) * 10 ** (-90 / 20),
            "silent",
            r"^The clip is silent \(peak -90 dBFS; at least -60 dBFS is needed\)",
        ),
        (
            lambda rng: np.where(np.arange(SR * 2) == SR, np.nan, rng.uniform(-1, 1, SR * 2)),
            "non_finite",
            r"^The audio contains non-finite samples \(NaN or infinity\), first at 1\.00 s",
        ),
    ],
)
def test_acceptance_rules_reject_with_a_message_for_people(fe, minilm_path, tmp_path, make, reason, message):
    wave = make(np.random.default_rng(6)).astype(np.float32)
    processor = tiny_processor(minilm_path)
    with pytest.raises(AudioRejected, match=message) as err:
        processor(audio=[np.stack([wave, wave])], sampling_rate=SR)  # one stereo recording
    assert err.value.reason == reason
    if reason == "non_finite":
        return  # a file cannot hold NaN in PCM
    path = tmp_path / "clip.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    with pytest.raises(UploadError, match=message):  # the Space's words are the same
        decode_upload(str(path), fe, MAX_ANALYSED_SECONDS)
    with pytest.raises(SkipClip, match=f"^{reason.replace('_', ' ')}: "):  # the builder skips it, saying why
        process_file(path, fe, DecodeSettings())


@pytest.mark.parametrize(
    ("content", "reason", "message"),
    [
        (b"", "empty", "The file is empty"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "unreadable", "Could not read audio from this file"),
        (b"just some text, not audio\n" * 20, "unreadable", "Could not read audio from this file"),
    ],
)
def test_unreadable_files_name_no_code_location_or_server_path(tmp_path, content, reason, message):
    path = tmp_path / "upload.wav"
    path.write_bytes(content)
    with pytest.raises(AudioRejected, match=message) as err:
        load_waveform(path)
    assert err.value.reason == reason
    text = str(err.value)
    assert ".cpp" not in text and str(tmp_path) not in text and "Traceback" not in text, text


def test_long_input_is_cut_at_max_seconds_alike_for_files_and_arrays(tmp_path):
    rng = np.random.default_rng(7)
    wave = rng.uniform(-0.5, 0.5, (3 * 22050, 2)).astype(np.float32)
    path = tmp_path / "three_seconds.flac"
    sf.write(path, wave, 22050)
    from_file = load_audio(path, max_seconds=2.0)
    from_array = load_audio(sf.read(path, dtype="float32")[0], 22050, max_seconds=2.0)
    assert from_file.info["truncated"] and from_array.info["truncated"]
    assert from_file.waveform.size == from_array.waveform.size == 2 * SR
    np.testing.assert_allclose(from_file.waveform, from_array.waveform, atol=1e-6)
    assert from_file.info["native_channels"] == 2 and from_file.info["native_sampling_rate"] == 22050


# A file whose decoded size is large (20 s, 8 channels at 384 kHz: 246 MB as float32) but small on disk; decoding
# it whole would need that much at once, the chunked decode needs about one chunk (16 MB) at a time.
FILE_RSS_CHILD = textwrap.dedent(
    """
    import json, resource, subprocess, sys
    from audio_music_clip import load_audio
    path, warm = sys.argv[1], sys.argv[2]
    load_audio(warm)  # imports torchcodec and FFmpeg's libraries and sets the decoder up
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loaded = load_audio(path)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"samples": loaded.waveform.size, "info": loaded.info, "rss_above_base_mb": (peak - base) / 1024}))
    """
)


@pytest.mark.slow  # ~15 s on a loaded 2-core machine: `pytest -m slow tests/test_audio_path.py`
def test_decoding_memory_does_not_grow_with_rate_or_channels(tmp_path):
    levels = "|".join(["0.25"] * 8)
    path, warm = tmp_path / "eight_channels_384k.flac", tmp_path / "warm.flac"
    for file, seconds in (
        (path, 20),
        (warm, 1),
    ):  # the same format warms up the decoder (~50-100 MB of setup)
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", f"aevalsrc={levels}:s=384000:d={seconds}"]
            + [str(file)],
            check=True,
        )
    result = run_child(FILE_RSS_CHILD, str(path), str(warm))
    assert result["info"]["native_channels"] == 8 and result["info"]["native_sampling_rate"] == 384000
    assert result["samples"] == 20 * SR
    assert result["rss_above_base_mb"] < 150, result  # decoded whole: 246 MB


def test_a_few_samples_at_a_high_rate_are_too_short_not_empty():
    # One sample at 48 kHz resamples to no sample at 16 kHz; the visitor must hear why: too short.
    with pytest.raises(AudioRejected, match="too short") as err:
        load_waveform(np.full(1, 0.5, np.float32), 48000)
    assert err.value.reason == "too_short"
