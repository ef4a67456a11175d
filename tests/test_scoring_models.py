"""CLIP and LPIPS scorers run for real on tiny random-weight models loaded from disk
through the same code real weights take."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from stitchcraft.media import write_video
from stitchcraft.scoring import FrameSource, ScoreBook, perceptual
from stitchcraft.scoring import clip as clip_scoring
from stitchcraft.storyboard import Scoring

pytestmark = pytest.mark.models
torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("lpips")

from tiny_clip import make_alexnet_backbone, make_tiny_clip  # noqa: E402

FPS = Fraction(24)
ONLY_MODELS = {"stability": 0, "seam": 0, "drift": 0, "still": 0, "identity": 0}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(autouse=True)
def no_real_caches(tmp_path, monkeypatch):
    """Every test sees empty model caches unless it fills them."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("STITCHCRAFT_CLIP_MODEL", raising=False)
    monkeypatch.delenv("STITCHCRAFT_LPIPS_WEIGHTS", raising=False)


def clip_frames(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (count, 12, 16, 3), dtype=np.uint8)
    return small.repeat(8, axis=1).repeat(8, axis=2)


def source(tmp_path, name: str, frames: np.ndarray, **kwargs) -> FrameSource:
    path = write_video(frames, tmp_path / f"{name}.mp4", FPS, crf=14)
    return FrameSource(name, path, len(frames), FPS, head=frames[:8], tail=frames[-16:], **kwargs)


def test_clip_scorers_run_on_tiny_model(tmp_path, tiny_clip):
    from PIL import Image

    frames = clip_frames(16, 1)
    reference = tmp_path / "reference.png"
    Image.fromarray(frames[0]).save(reference)
    previous = source(tmp_path, "previous", clip_frames(16, 2))
    take = source(tmp_path, "take", frames, prompt="a red bicycle in the rain", reference=reference)

    book = ScoreBook(Scoring(clip_model=tiny_clip["file"], weights=ONLY_MODELS))
    assert {"prompt", "reference", "seam_clip"} <= set(book.scorers)
    assert any(w.startswith("LPIPS") for w in book.warnings)
    assert not any(w.startswith("CLIP") for w in book.warnings)

    scores = book.take_scores(take)
    assert set(scores) == {"prompt", "reference"}
    for score in scores.values():
        assert 0.0 <= score.value <= 1.0
        assert -1.0 <= score.parts["min"] <= score.parts["similarity"] <= 1.0
    seam = book.seam_scores(previous, take)["seam_clip"]
    assert -1.0 <= seam.parts["similarity"] <= 1.0

    # Identical frames either side of a join are as similar as CLIP can say.
    echo = source(tmp_path, "echo", np.concatenate([frames[-2:], frames[-2:]]))
    assert book.seam_scores(take, echo)["seam_clip"].parts["similarity"] == pytest.approx(1.0, abs=1e-5)

    model = clip_scoring.load_clip(clip_scoring.resolve_clip(tiny_clip["file"]))
    assert not model.model.training
    ScoreBook(Scoring(clip_model=tiny_clip["file"], weights=ONLY_MODELS)).take_scores(
        source(tmp_path, "other", frames, prompt="x"))
    assert clip_scoring.load_clip(clip_scoring.resolve_clip(tiny_clip["file"])) is model

    # Without a prompt or reference there is nothing to say.
    assert book.take_scores(source(tmp_path, "plain", frames)) == {}


def test_clip_local_dir_loads_the_same_weights(tiny_clip):
    images = list(clip_frames(3, 3))
    from_file = clip_scoring.load_clip(clip_scoring.resolve_clip(tiny_clip["file"]))
    from_dir = clip_scoring.load_clip(clip_scoring.resolve_clip(tiny_clip["local_dir"]))
    np.testing.assert_allclose(from_file.encode_images(images), from_dir.encode_images(images), atol=1e-5)
    np.testing.assert_allclose(from_file.encode_text(["a cat"]), from_dir.encode_text(["a cat"]), atol=1e-5)
    embeddings = from_file.encode_images(images * 7)  # more than one batch
    assert embeddings.shape == (21, 32)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_clip_tag_resolves_from_hf_cache_only(tmp_path):
    with pytest.raises(clip_scoring.ClipUnavailable) as missing:
        clip_scoring.resolve_clip("ViT-B-32:openai")
    assert "not found" in str(missing.value) and "scoring.clip_model" in str(missing.value)

    repo = tmp_path / "hf" / "models--timm--vit_base_patch32_clip_224.openai"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"stand-in")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    spec = clip_scoring.resolve_clip("ViT-B-32:openai")
    assert spec.weights == snapshot / "open_clip_model.safetensors"
    assert spec.quick_gelu is True and spec.mean is not None

    with pytest.raises(clip_scoring.ClipUnavailable, match="unknown open_clip architecture"):
        clip_scoring.resolve_clip("No-Such-Net:openai")
    with pytest.raises(clip_scoring.ClipUnavailable, match="not found"):
        clip_scoring.resolve_clip(f"ViT-B-32:{tmp_path / 'absent.safetensors'}")


def test_clip_cache_key_follows_the_weights_file(tmp_path, tiny_clip):
    scorer = clip_scoring.PromptScorer(Scoring(clip_model=tiny_clip["file"]))
    spec = clip_scoring.resolve_clip(tiny_clip["file"])
    assert spec.weights.name in scorer.identity()
    take = FrameSource("t", tmp_path / "t.mp4", 1, FPS, prompt="one")
    other = FrameSource("t", tmp_path / "t.mp4", 1, FPS, prompt="two")
    assert scorer.inputs_key(take) != scorer.inputs_key(other)


def test_lpips_backbone_from_torch_home(tmp_path):
    saved = make_alexnet_backbone(tmp_path / "torch" / "hub" / "checkpoints" / perceptual.ALEXNET_FILE)
    book = ScoreBook(Scoring(weights={**ONLY_MODELS, "prompt": 0, "reference": 0, "seam_clip": 0}))
    assert set(book.scorers) == {"flicker", "seam_lpips"} and book.warnings == []

    model = perceptual.load_lpips(saved)
    state = torch.load(saved, weights_only=True)
    assert torch.equal(model.model.net.slice1[0].weight, state["features.0.weight"])
    assert not model.model.training

    frames = clip_frames(16, 4)
    take = source(tmp_path, "take", frames)
    same = source(tmp_path, "same", np.concatenate([frames[-2:][::-1], frames[:6]]))
    unrelated = source(tmp_path, "unrelated", clip_frames(8, 5))
    identical = book.seam_scores(take, same)["seam_lpips"]
    different = book.seam_scores(take, unrelated)["seam_lpips"]
    assert identical.parts["distance"] == pytest.approx(0.0, abs=1e-6) and identical.value == 1.0
    assert different.parts["distance"] > 0 and different.value < 1.0
    flicker = book.take_scores(take)["flicker"]
    assert 0.0 <= flicker.value <= 1.0 and 0 < flicker.parts["mean"] <= flicker.parts["max"]


def test_lpips_backbone_from_settings_path(tmp_path):
    saved = make_alexnet_backbone(tmp_path / "weights" / "my-alexnet.pth")
    settings = Scoring(lpips_weights=str(saved))
    assert perceptual.SeamLpipsScorer.availability(settings)
    assert not perceptual.SeamLpipsScorer.availability(Scoring())
    model = perceptual.load_lpips(perceptual.find_backbone(settings))
    state = torch.load(saved, weights_only=True)
    for slice_, index in ((model.model.net.slice1, "0"), (model.model.net.slice5, "10")):
        assert torch.equal(getattr(slice_, index).weight, state[f"features.{index}.weight"])
    assert "my-alexnet.pth" in perceptual.SeamLpipsScorer(settings).identity()


def test_lpips_rejects_wrong_file(tmp_path):
    from stitchcraft.errors import ConfigError

    wrong = tmp_path / "wrong.pth"
    torch.save({"something.weight": torch.zeros(3)}, wrong)
    with pytest.raises(ConfigError, match="not torchvision AlexNet"):
        perceptual.LpipsModel(wrong)
