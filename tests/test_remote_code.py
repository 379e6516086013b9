"""Saved folders load through the Auto classes and both pipelines in a process that cannot import this repo."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_WINDOW_SAMPLES
from transformers import AutoTokenizer

from feature_extraction_music_clip import MusicClipFeatureExtractor
from modeling_music_clip import MusicClipForAudioClassification, MusicClipModel
from processing_music_clip import MusicClipProcessor

LABELS = {0: "baroque chorale", 1: "fiddle tune", 2: "folk song"}

# Runs with another cwd; the project's modules are blocked, so only the code inside the folders can serve.
CHILD = textwrap.dedent(
    """
    import json, sys
    for name in ("configuration_music_clip", "modeling_music_clip", "losses_music_clip",
                 "feature_extraction_music_clip", "processing_music_clip", "audio_music_clip", "pipeline_music_clip",
                 "train",
                 "build_dataset"):
        sys.modules[name] = None  # any import of the repository now fails
    import numpy as np, torch
    from transformers import (AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification,
                              AutoProcessor, pipeline)
    model_dir, clf_dir = sys.argv[1], sys.argv[2]
    wave = (0.3 * np.sin(2 * np.pi * 220 * np.arange(44100 * 6) / 44100)).astype(np.float32)
    model = AutoModel.from_pretrained(model_dir, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
    AutoFeatureExtractor.from_pretrained(model_dir, trust_remote_code=True)
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
    inputs = processor(audio=[wave], sampling_rate=44100, text=["a sad folk song", "a jig"], return_tensors="pt")
    import soundfile
    soundfile.write("clip.wav", wave, 44100, subtype="FLOAT")  # a path goes through the folder's audio path too
    path_gap = float((processor(audio="clip.wav")["input_features"] - inputs["input_features"]).abs().max())
    with torch.no_grad():
        out = model(**inputs)
    zero_shot = pipeline("zero-shot-audio-classification", model=model_dir, trust_remote_code=True)
    labels = ["rock", "jazz", "baroque chorale"]
    zs = zero_shot(wave, candidate_labels=labels)
    clf = AutoModelForAudioClassification.from_pretrained(clf_dir, trust_remote_code=True)
    classify = pipeline("audio-classification", model=clf_dir, trust_remote_code=True)
    result = classify({"raw": wave, "sampling_rate": 44100}, top_k=3)
    # The folder's pipelines take what the processor takes (a path, a stereo dict) through the one audio path.
    by_label = lambda answer: {r["label"]: r["score"] for r in answer}
    same_input = [by_label(classify(x, top_k=3)) for x in ("clip.wav", {"raw": np.stack([wave, wave]), "sampling_rate": 44100})]
    zs_path = by_label(zero_shot("clip.wav", candidate_labels=labels))
    zs_dict = by_label(zero_shot({"raw": wave, "sampling_rate": 44100}, candidate_labels=labels))
    print(json.dumps({
        "model_class": type(model).__name__, "config_class": type(config).__name__,
        "module": type(model).__module__, "logits": out.logits_per_audio.tolist(),
        "zero_shot": zs, "clf_class": type(clf).__name__, "classify": result, "path_gap": path_gap,
        "pipes": [type(zero_shot).__name__, type(classify).__name__], "same_input": same_input,
        "zs_path": zs_path, "zs_dict": zs_dict,
    }))
    """
)


@pytest.fixture(scope="module")
def saved_folders(tmp_path_factory, minilm_path):
    root = tmp_path_factory.mktemp("remote")
    model_dir, clf_dir = root / "model", root / "classifier"
    model = MusicClipModel.from_text_pretrained(minilm_path, window_samples=TINY_WINDOW_SAMPLES)
    processor = MusicClipProcessor(
        MusicClipFeatureExtractor.from_model_config(model.config), AutoTokenizer.from_pretrained(minilm_path)
    )
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    clf = MusicClipForAudioClassification.from_pretrained(
        model_dir, num_labels=3, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}
    )
    clf.save_pretrained(clf_dir)
    MusicClipFeatureExtractor.from_model_config(model.config).save_pretrained(clf_dir)
    return model, model_dir, clf_dir


def test_folders_hold_safetensors_and_code(saved_folders):
    _, model_dir, clf_dir = saved_folders
    names = {p.name for p in model_dir.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "processor_config.json",
        "modeling_music_clip.py",
        "losses_music_clip.py",
        "processing_music_clip.py",
        "audio_music_clip.py",
        "pipeline_music_clip.py",
        "README.md",
    } <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    auto_map = json.loads((clf_dir / "config.json").read_text())["auto_map"]
    assert "AutoModelForAudioClassification" in auto_map and "AutoModel" not in auto_map


def test_auto_classes_and_pipelines_without_the_repo(saved_folders, tmp_path):
    model, model_dir, clf_dir = saved_folders
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(model_dir), str(clf_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["model_class"] == "MusicClipModel" and result["config_class"] == "MusicClipConfig"
    assert result["module"].startswith("transformers_modules"), result["module"]  # code came from the folder
    assert str(REPO) not in result["module"]
    assert result["path_gap"] <= 1e-4  # a file and its samples give the same features in remote code
    assert result["pipes"] == [
        "MusicClipZeroShotAudioClassificationPipeline",
        "MusicClipAudioClassificationPipeline",
    ]
    scores = {r["label"]: r["score"] for r in result["classify"]}
    for answer in result["same_input"]:  # the file, and the stereo dict, score as the mono samples did
        assert answer.keys() == scores.keys()
        assert max(abs(answer[k] - scores[k]) for k in scores) <= 1e-4, (answer, scores)
    assert max(abs(result["zs_path"][k] - result["zs_dict"][k]) for k in result["zs_dict"]) <= 1e-4
    # The same scores as in this process.
    processor = MusicClipProcessor.from_pretrained(model_dir, trust_remote_code=True)
    wave = (0.3 * np.sin(2 * np.pi * 220 * np.arange(44100 * 6) / 44100)).astype(np.float32)
    with torch.no_grad():
        local = model.eval()(
            **processor(audio=[wave], sampling_rate=44100, text=["a sad folk song", "a jig"])
        )
    assert np.allclose(result["logits"], local.logits_per_audio.numpy(), atol=1e-4)
    zero_shot = result["zero_shot"]
    assert sorted(r["label"] for r in zero_shot) == ["baroque chorale", "jazz", "rock"]
    assert sum(r["score"] for r in zero_shot) == pytest.approx(1.0, abs=1e-4)
    assert result["clf_class"] == "MusicClipForAudioClassification"
    assert sorted(r["label"] for r in result["classify"]) == sorted(LABELS.values())
