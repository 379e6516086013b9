"""The one mel path: shapes, bad input, resampling, downmixing, windows, determinism."""

import numpy as np
import pytest
import torch
from conftest import TINY_WINDOW_SAMPLES

from audio_music_clip import AudioRejected
from feature_extraction_music_clip import MusicClipFeatureExtractor

SR = 16000


@pytest.fixture(scope="module")
def fe() -> MusicClipFeatureExtractor:
    return MusicClipFeatureExtractor(window_samples=TINY_WINDOW_SAMPLES)


def test_thesis_window_gives_64_by_4219():
    thesis = MusicClipFeatureExtractor()
    wave = np.random.default_rng(0).standard_normal(4_320_000).astype(np.float32) * 0.1
    assert thesis.log_mel(thesis.prepare_waveform(wave, SR)).shape == (4219, 64)
    assert thesis.window_frames == 4219


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros(0, np.float32), "empty"),
        (np.full(16000, np.nan, np.float32), "non-finite"),
        (np.array([0.1, np.inf] * 100, np.float32), "non-finite"),
        (np.zeros((2, 3, 4), np.float32), "1-D .* or 2-D"),
        (np.ones(100, dtype=bool), "dtype bool"),
        (np.ones(100, dtype=np.complex64), "dtype complex64"),
        (np.array(["a", "b"]), "dtype"),  # a list of strings is a batch of file paths
    ],
)
def test_bad_audio_raises_clear_value_error(fe, audio, message):
    with pytest.raises(ValueError, match=message):
        fe(audio, sampling_rate=SR)


def test_bad_sampling_rate(fe):
    with pytest.raises(ValueError, match="sampling_rate"):
        fe(np.zeros(100, np.float32), sampling_rate=0)
    with pytest.warns(UserWarning, match="No sampling_rate"):
        fe(np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32))


def test_short_and_silent_clips_are_rejected_like_the_builder_does(fe):
    # Until issue 11 the extractor answered for these; the builder skipped them. One rule now.
    noise = np.random.default_rng(1).uniform(-1, 1, SR * 5).astype(np.float32)
    with pytest.raises(AudioRejected, match=r"^The clip is silent \(digital silence") as err:
        fe(np.zeros(SR * 5, np.float32), sampling_rate=SR)
    assert err.value.reason == "silent"
    with pytest.raises(AudioRejected, match=r"^0\.1 s is too short: at least 1 s is needed"):
        fe(noise[:1600], sampling_rate=SR)
    with pytest.raises(AudioRejected, match="too short"):
        fe(noise[:3], sampling_rate=SR)
    # Below the threshold the features are still computable on request (check=False): silence is exactly 0.
    silent = fe.log_mel(fe.prepare_waveform(np.zeros(SR * 5, np.float32), SR, check=False))
    assert np.count_nonzero(silent) == 0  # log(1 + 0) = 0
    one_second = fe(noise[:SR], sampling_rate=SR)  # exactly the minimum: one padded window
    assert one_second["window_mask"].tolist() == [[1]]


def test_multichannel_clips_in_a_list_are_downmixed_either_layout(fe):
    rng = np.random.default_rng(2)
    mono = rng.uniform(-0.5, 0.5, SR * 2).astype(np.float32)
    six = np.stack([mono] * 6)  # (channels, samples)
    expected = fe(mono, sampling_rate=SR)["input_features"]
    assert torch.allclose(fe([six], sampling_rate=SR)["input_features"], expected, atol=1e-5)
    assert torch.allclose(fe([six.T], sampling_rate=SR)["input_features"], expected, atol=1e-5)
    assert torch.allclose(
        fe([torch.from_numpy(six)], sampling_rate=SR)["input_features"], expected, atol=1e-5
    )


def test_a_2d_array_is_a_batch_of_mono_clips_as_in_transformers(fe, minilm_path):
    from conftest import tiny_config, tiny_processor

    rng = np.random.default_rng(4)
    batch = 0.1 * rng.standard_normal((3, SR * 5))
    processor = tiny_processor(minilm_path, tiny_config())
    features = processor(audio=batch, sampling_rate=SR)["input_features"]
    assert features.shape[0] == 3
    for row, clip in zip(features, batch):
        alone = processor.feature_extractor(clip, sampling_rate=SR)["input_features"][0]
        assert torch.allclose(row, alone, atol=1e-6)
    assert fe(torch.from_numpy(batch), sampling_rate=SR)["input_features"].shape[0] == 3


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 96000])
def test_any_rate_is_resampled_to_16k(fe, rate):
    t = np.arange(rate * 3) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    mel = fe.log_mel(fe.prepare_waveform(tone, rate))
    assert mel.shape[0] == (3 * SR) // fe.hop_length + 1
    reference = fe.log_mel(fe.prepare_waveform((0.5 * np.sin(2 * np.pi * 440 * np.arange(SR * 3) / SR)), SR))
    assert mel[2:-2].argmax(1).tolist() == reference[2:-2].argmax(1).tolist()  # same loudest mel bin


def test_integer_pcm_is_scaled(fe):
    rng = np.random.default_rng(3)
    wave = rng.uniform(-0.5, 0.5, SR).astype(np.float32)
    pcm16 = (wave * 32768).astype(np.int16)
    assert np.allclose(fe.prepare_waveform(pcm16, SR), wave, atol=1e-4)


def test_windows_cover_long_clips_without_padding(fe):
    frames = fe.window_frames
    starts = fe.window_starts(frames * 3 + 10)
    assert len(starts) == 4 and starts[0] == 0 and starts[-1] == frames * 3 + 10 - frames
    assert fe.window_starts(frames * 3 + 10, multi_window=False) == [0]
    batch = fe.window([np.ones((frames * 2, 64), np.float32), np.ones((5, 64), np.float32)])
    assert batch["input_features"].shape == (2, 2, 64, frames)
    assert batch["window_mask"].tolist() == [[1, 1], [1, 0]]
    with pytest.raises(ValueError, match="shape"):
        fe.window([np.ones((5, 32), np.float32)])


def test_batch_list_and_determinism(fe):
    rng = np.random.default_rng(4)
    clips = [rng.uniform(-1, 1, n).astype(np.float32) for n in (SR * 2, SR * 9, SR + 7)]
    batch = fe(clips, sampling_rate=SR)
    alone = fe(clips[1], sampling_rate=SR)
    windows = int(alone["window_mask"].sum())
    assert torch.equal(batch["input_features"][1, :windows], alone["input_features"][0])
    assert torch.equal(fe(clips, sampling_rate=SR)["input_features"], batch["input_features"])
    with pytest.raises(ValueError, match="clip 1: The audio is empty"):
        fe([clips[0], np.zeros(0, np.float32)], sampling_rate=SR)


def test_normalisation_stats_are_validated_and_applied():
    with pytest.raises(ValueError, match="64 values"):
        MusicClipFeatureExtractor(mel_mean=[0.0] * 3)
    fe = MusicClipFeatureExtractor(
        window_samples=TINY_WINDOW_SAMPLES, mel_mean=[1.0] * 64, mel_std=[2.0] * 64
    )
    out = fe.window([np.ones((10, 64), np.float32) * 3])["input_features"]
    assert out[0, 0, 0, 0].item() == pytest.approx(1.0)  # (3 - 1) / 2
    assert out[0, 0, 0, -1].item() == pytest.approx(-0.5)  # padding is silence (0), normalised like silence


def test_extractor_is_json_serialisable(tmp_path, fe):
    fe.save_pretrained(tmp_path)
    again = MusicClipFeatureExtractor.from_pretrained(tmp_path)
    assert again.window_samples == TINY_WINDOW_SAMPLES and again.to_dict() == fe.to_dict()
