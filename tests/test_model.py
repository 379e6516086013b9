"""MusicClipModel / MusicClipForAudioClassification: thesis numbers, objectives, invariance, bad input."""

import numpy as np
import pytest
import torch
from conftest import tiny_config, tiny_processor

from configuration_music_clip import OBJECTIVES, MusicClipConfig
from modeling_music_clip import MusicClipAudioEncoder, MusicClipForAudioClassification, MusicClipModel

SR = 16000


def test_thesis_audio_encoder_numbers():
    config = MusicClipConfig()
    encoder = MusicClipAudioEncoder(config)
    assert sum(p.numel() for p in encoder.parameters()) == 261_376
    assert config.audio_flatten_size == 8_448
    with torch.no_grad():
        assert encoder(torch.zeros(1, 64, 4219)).shape == (1, 8448)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objective": "clip"}, "objective must be one of"),
        ({"text_pooling": "max"}, "text_pooling"),
        ({"window_samples": 8000}, "too small for the audio CNN"),
        ({"n_mels": 0}, "n_mels must be a positive integer"),
        ({"triplet_margin": -1.0}, "triplet_margin"),
        ({"audio_conv_kernels": (3, 3)}, "equally long"),
        ({"text_config": {"model_type": "nope"}}, "model_type"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**kwargs)


def test_config_round_trip(tmp_path):
    config = tiny_config(objective="triplet", triplet_margin=0.3)
    config.save_pretrained(tmp_path)
    again = MusicClipConfig.from_pretrained(tmp_path)
    assert again.objective == "triplet" and again.triplet_margin == 0.3
    assert again.text_config.hidden_size == 32 and again.audio_flatten_size == config.audio_flatten_size


@pytest.fixture(scope="module")
def toy_batch(minilm_path):
    processor = tiny_processor(minilm_path)
    rng = np.random.default_rng(0)
    clips = [
        rng.uniform(-0.5, 0.5, SR * s).astype(np.float32) * (i + 1) / 4 for i, s in enumerate((4, 5, 3, 9))
    ]
    sentences = [f"sentence {j} about track {i}" for i in range(4) for j in range(3)]
    inputs = processor(text=sentences, audio=clips, sampling_rate=SR)
    inputs["text_audio_index"] = torch.arange(4).repeat_interleave(3)
    return inputs


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_a_few_steps_lower_each_objective(objective, toy_batch):
    torch.manual_seed(0)
    model = MusicClipModel(tiny_config(objective=objective))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def mean_loss(repeats: int = 4) -> float:
        # Train mode (BatchNorm on batch statistics, as during the steps); the same random positive/negative
        # draws before and after training.
        torch.manual_seed(1)
        with torch.no_grad():
            return float(np.mean([model(**toy_batch, return_loss=True).loss.item() for _ in range(repeats)]))

    before = mean_loss()
    for _ in range(20):
        optimizer.zero_grad()
        model(**toy_batch, return_loss=True).loss.backward()
        optimizer.step()
    assert mean_loss() < before


def test_outputs_and_features(toy_batch):
    model = MusicClipModel(tiny_config()).eval()
    with torch.no_grad():
        out = model(**toy_batch)
        audio = model.get_audio_features(toy_batch["input_features"], toy_batch["window_mask"])
        text = model.get_text_features(toy_batch["input_ids"], toy_batch["attention_mask"])
    assert out.loss is None and out.logits_per_audio.shape == (4, 12) and out.logits_per_text.shape == (12, 4)
    assert out.audio_v.shape == (4, 64) and out.text_v.shape == (12, 64)
    assert torch.allclose(out.audio_embeds, torch.nn.functional.normalize(audio, dim=-1), atol=1e-6)
    assert torch.allclose(out.text_embeds.norm(dim=-1), torch.ones(12))
    assert text.shape == (12, 32)


def test_unpaired_batch_is_a_clear_error(toy_batch):
    model = MusicClipModel(tiny_config())
    with pytest.raises(ValueError, match="do not pair up"):
        model(**{k: v for k, v in toy_batch.items() if k != "text_audio_index"}, return_loss=True)
    with pytest.raises(ValueError, match="feature extractor"):
        model(input_features=torch.zeros(1, 1, 64, 10), input_ids=toy_batch["input_ids"])


def test_clip_embedding_is_batch_invariant_and_deterministic(minilm_path):
    model = MusicClipModel(tiny_config()).eval()
    fe = tiny_processor(minilm_path).feature_extractor
    rng = np.random.default_rng(5)
    clip = rng.uniform(-0.5, 0.5, SR * 7).astype(np.float32)
    others = [rng.uniform(-0.5, 0.5, SR * n).astype(np.float32) for n in (30, 2)]
    with torch.no_grad():
        alone = model.get_audio_features(**fe(clip, sampling_rate=SR))
        batched = model.get_audio_features(**fe([others[0], clip, others[1]], sampling_rate=SR))
        again = model.get_audio_features(**fe(clip, sampling_rate=SR))
    assert torch.allclose(alone[0], batched[1], atol=1e-5)
    assert torch.equal(alone, again)


def test_classifier_loads_audio_side_and_freezes(tmp_path, toy_batch):
    pretrained = MusicClipModel(tiny_config())
    pretrained.save_pretrained(tmp_path)
    labels = {0: "a", 1: "b", 2: "c"}
    clf = MusicClipForAudioClassification.from_pretrained(
        tmp_path, num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    assert torch.equal(clf.audio_encoder.layers[0].weight, pretrained.audio_encoder.layers[0].weight)
    assert torch.equal(clf.audio_projection.v.weight, pretrained.audio_projection.v.weight)
    assert (tmp_path / "README.md").read_text().startswith("---")
    clf.freeze_audio_encoder()
    clf.train()
    assert clf.audio_encoder_frozen and not clf.audio_encoder.training and clf.classifier.training
    out = clf(toy_batch["input_features"], toy_batch["window_mask"], labels=torch.tensor([0, 1, 2, 0]))
    out.loss.backward()
    assert clf.audio_encoder.layers[0].weight.grad is None and clf.classifier[0].weight.grad is not None
    clf.unfreeze_audio_encoder()
    clf.train()
    assert clf.audio_encoder.training
    with pytest.raises(ValueError, match="labels"):
        clf(toy_batch["input_features"], toy_batch["window_mask"], labels=torch.tensor([0, 1]))


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_forward_hands_groups_and_generator_to_the_loss(objective, toy_batch):
    from losses_music_clip import build_loss

    torch.manual_seed(0)
    model = MusicClipModel(tiny_config(objective=objective)).eval()
    groups = torch.tensor([0, 0, 1, 2])  # tracks 0 and 1: one piece

    def loss(**kwargs) -> torch.Tensor:
        torch.manual_seed(3)  # the same global draws too, should a generator be ignored
        with torch.no_grad():
            return model(
                **toy_batch, return_loss=True, generator=torch.Generator().manual_seed(0), **kwargs
            ).loss

    grouped = loss(audio_group=groups)
    assert grouped != loss(), "the forward ignored audio_group"
    with torch.no_grad():
        audio_z = model.get_audio_features(toy_batch["input_features"], toy_batch["window_mask"])
        text_z = model.get_text_features(toy_batch["input_ids"], toy_batch["attention_mask"])
        expected = build_loss(model.config, model.matching_head)(
            audio_z,
            text_z,
            toy_batch["text_audio_index"],
            model.logit_scale_value,
            groups,
            torch.Generator().manual_seed(0),
        )
    torch.testing.assert_close(grouped, expected)


def test_the_text_cache_encodes_each_distinct_text_once(minilm_path):
    """Template captions repeat (the quick build: 15,945 sentences, 3,881 distinct); each is encoded once, and
    every copy gets the vector it gets on its own."""
    from music_clip_train.evaluation import pooled_texts

    model, tokenizer = MusicClipModel(tiny_config()).eval(), tiny_processor(minilm_path).tokenizer
    encoded: list[int] = []
    encode = model.get_text_pooled
    model.get_text_pooled = lambda ids, mask: encoded.append(len(ids)) or encode(ids, mask)
    texts = ["a sad folk song", "a bright chorale in D major", "a sad folk song", "fiddle"] * 20
    pooled = pooled_texts(model, texts, tokenizer, 32, batch_size=3)
    assert sum(encoded) == 3
    alone = torch.cat([pooled_texts(model, [t], tokenizer, 32) for t in texts[:4]])
    torch.testing.assert_close(pooled[:4], alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(pooled[4:8], pooled[:4], atol=0, rtol=0)


MATCH_SCORES = """
import resource, sys, torch
sys.path.insert(0, sys.argv[1])
from conftest import tiny_config
from modeling_music_clip import MusicClipModel
model = MusicClipModel(tiny_config(objective="matching", projection_dim=256)).eval()
audio, text = torch.randn(1000, 256), torch.randn(3000, 256)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.no_grad():
    scores = model.similarity(audio, text)
    rows = torch.cat([model.matching_head(torch.cat([a.expand(3000, -1), text], -1)).T for a in audio[:3]])
assert scores.shape == (1000, 3000)
torch.testing.assert_close(scores[:3], rows, atol=1e-5, rtol=1e-5)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_matching_scores_over_a_large_held_out_set_stay_small(tmp_path):
    """The full build's held-out retrieval (1,888 tracks x 5,664 sentences) asked SMM's head for every pair at
    once: a 45 GB tensor. 1,000 x 3,000 pairs of 256-d embeddings would be 6 GB; in blocks they add < 0.5 GB."""
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    done = subprocess.run(
        [sys.executable, "-c", MATCH_SCORES, str(tests)], cwd=tests.parent, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) < 512, done.stdout
