"""The diffusers engines, driven through the Engine interface on tiny random-weight
pipelines saved with save_pretrained and loaded back from disk (tests/tiny_pipelines.py).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from stitchcraft.engines import SegmentRequest, engine_class
from stitchcraft.engines.base import FrameRule
from stitchcraft.engines.diffusion.frames import Window, plan_window, tail_count, to_uint8
from stitchcraft.errors import EngineError, EngineUnavailable
from stitchcraft.storyboard import EngineSettings

models = pytest.mark.models

# The storyboard field for a separate image-to-video checkpoint, until EngineSettings has it.
if "image_model" in EngineSettings.model_fields:
    Settings = EngineSettings
else:
    class Settings(EngineSettings):  # type: ignore[no-redef]
        image_model: str | None = None


def request(**changes) -> SegmentRequest:
    fields = dict(shot_id="s1", segment=0, kind="prompt", frames=9, width=64, height=64,
                  fps=Fraction(24), seeds=[11, 12, 13], prompt="a red car on the road at night")
    fields.update(changes)
    return SegmentRequest(**fields)


def tail(frames: int = 12, seed: int = 0) -> np.ndarray:
    """A previous take's last frames: a moving gradient, uint8."""
    ys, xs = np.mgrid[0:64, 0:64]
    return np.stack([np.stack([(xs * 4 + t * 9) % 256, (ys * 4 + seed * 40) % 256,
                               np.full_like(xs, 90 + t * 5)], axis=-1)
                     for t in range(frames)]).astype(np.uint8)


# -- pure frame bookkeeping ------------------------------------------------------------

def test_window_drops_the_conditioning_frames_and_fits_the_rule():
    window = plan_window(FrameRule(8, 1), frames=17, lead=9)
    assert window.total == 33 and FrameRule(8, 1).allows(window.total)
    assert list(window.kept()) == list(range(9, 26))


def test_bridge_window_keeps_the_target_as_last_frame():
    window = plan_window(FrameRule(4, 1), frames=9, lead=1, ends_on_last=True)
    kept = window.kept()
    assert window.total == 13 and len(kept) == 9
    assert kept[0] == 1 and kept[-1] == 12 and len(set(kept)) == 9
    assert window.dropped_inside == 3


def test_tail_count_takes_the_largest_allowed_count():
    assert tail_count(FrameRule(8, 1), available=12, most=9) == 9
    assert tail_count(FrameRule(8, 1), available=30, most=17) == 17
    assert tail_count(FrameRule(8, 1), available=8, most=17) == 1
    assert tail_count(FrameRule(), available=3, most=1) == 1


def test_to_uint8_rounds_and_clips():
    assert to_uint8(np.array([-0.1, 0.0, 0.5, 1.2])).tolist() == [0, 0, 128, 255]


def test_window_kept_is_exact_without_a_target():
    assert list(Window(total=9, lead=0, frames=9).kept()) == list(range(9))


# -- availability (no model loads) -------------------------------------------------------

@models  # the availability checks past 'packages missing' need the model stack
@pytest.mark.parametrize("name", ["ltx-video", "wan", "svd", "cogvideox"])
def test_missing_local_weights_are_named(name, tmp_path):
    folder = tmp_path / "nowhere"
    available = engine_class(name).availability(Settings(model=str(folder), device="cpu"))
    assert not available
    assert str(folder) in available.reason and "does not exist" in available.reason


def test_missing_hub_weights_say_how_to_get_them(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("STITCHCRAFT_ALLOW_DOWNLOAD", raising=False)
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    available = engine_class("ltx-video").availability(Settings(device="cpu"))
    assert not available
    assert "huggingface-cli download Lightricks/LTX-Video" in available.reason
    assert "engines: {ltx-video: {model: /path/to/folder}}" in available.reason


@models  # the availability checks past 'packages missing' need the model stack
def test_folder_without_a_pipeline_is_explained(tmp_path):
    available = engine_class("svd").availability(Settings(model=str(tmp_path), device="cpu"))
    assert not available and "model_index.json" in available.reason


@models  # the availability checks past 'packages missing' need the model stack
def test_no_cuda_is_explained(monkeypatch):
    from stitchcraft.engines.diffusion import runtime

    monkeypatch.setattr(runtime, "_cuda_present", lambda: False)
    monkeypatch.setattr(runtime, "_mps_present", lambda: False)
    monkeypatch.delenv("STITCHCRAFT_ALLOW_CPU", raising=False)
    for name in ["ltx-video", "wan", "svd", "cogvideox"]:
        available = engine_class(name).availability(Settings())
        assert not available
        assert "no CUDA GPU found; set device: cpu to force (very slow)" in available.reason
    monkeypatch.setenv("STITCHCRAFT_ALLOW_CPU", "1")
    assert "no CUDA" not in engine_class("wan").availability(Settings()).reason


@models  # the availability checks past 'packages missing' need the model stack
def test_missing_package_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "diffusers" else real(name, *a))
    available = engine_class("cogvideox").availability(Settings(device="cpu"))
    assert not available
    assert "package missing: diffusers" in available.reason
    assert "pip install 'stitchcraft[models]'" in available.reason


# -- engines on tiny pipelines -----------------------------------------------------------

@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("diffusers")
    from tiny_pipelines import build_tiny_pipelines

    return build_tiny_pipelines(tmp_path_factory.mktemp("tiny-pipelines"))


def make_engine(name: str, tiny: dict[str, Path], **changes):
    settings = {"model": str(tiny[name]), "device": "cpu", "dtype": "fp32", "steps": 2}
    if f"{name}-i2v" in tiny:
        settings["image_model"] = str(tiny[f"{name}-i2v"])
    settings.update(changes)
    return engine_class(name)(Settings(**settings))


@pytest.fixture(scope="module")
def engines(tiny):
    """One engine per family, kept across tests as a render keeps it across shots."""
    made = {name: make_engine(name, tiny) for name in ["ltx-video", "wan", "svd", "cogvideox"]}
    yield made
    for engine in made.values():
        engine.close()


FRAMES = {"ltx-video": 9, "wan": 9, "svd": 6, "cogvideox": 9}


def first_request(name: str, tmp_path: Path | None = None, **changes) -> SegmentRequest:
    """A request each engine can start a shot from: a prompt, or a still for SVD."""
    if name == "svd":
        image = Path(tmp_path) / "still.png"
        from PIL import Image

        Image.fromarray(tail(1)[0]).save(image)
        changes = {"kind": "image", "image": image, "prompt": None, **changes}
    return request(frames=FRAMES[name], **changes)


@models
@pytest.mark.parametrize("name", ["ltx-video", "wan", "svd", "cogvideox"])
def test_takes_have_exact_frames_size_and_one_seed_each(engines, name, tmp_path):
    engine = engines[name]
    assert engine.availability(engine.settings)
    takes = list(engine.generate(first_request(name, tmp_path)))
    assert [take.seed for take in takes] == [11, 12, 13]
    for take in takes:
        assert take.frames.dtype == np.uint8
        assert take.frames.shape == (FRAMES[name], 64, 64, 3)
        assert take.meta["seed"] == take.seed and take.meta["steps"] == 2
        assert take.meta["device"] == "cpu" and take.meta["dtype"] == "float32"
    assert not np.array_equal(takes[0].frames, takes[1].frames)


@models
@pytest.mark.parametrize("name", ["ltx-video", "wan", "svd", "cogvideox"])
def test_a_seed_in_a_batch_matches_the_seed_made_alone(engines, name, tmp_path):
    engine = engines[name]
    batched = list(engine.generate(first_request(name, tmp_path, seeds=[5, 6, 7])))
    again = list(engine.generate(first_request(name, tmp_path, seeds=[5, 6, 7])))
    alone = list(engine.generate(first_request(name, tmp_path, seeds=[6])))
    assert batched[0].meta["batch"] == 3 and alone[0].meta["batch"] == 1
    for first, second in zip(batched, again, strict=True):
        assert np.array_equal(first.frames, second.frames)
    # Batched kernels sum in another order: at most one level of rounding differs.
    difference = np.abs(batched[1].frames.astype(int) - alone[0].frames.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.001


@models
def test_a_fresh_engine_reproduces_a_take(engines, tiny):
    first = next(engines["wan"].generate(request(seeds=[42])))
    fresh = make_engine("wan", tiny)
    second = next(fresh.generate(request(seeds=[42])))
    assert np.array_equal(first.frames, second.frames)


def raw_frames(engine, key: str, arguments: dict, seed: int) -> np.ndarray:
    """The pipeline's own output for one seed, called directly."""
    import torch

    pipe = engine._pipes[key]
    video = pipe(**arguments, generator=[torch.Generator("cpu").manual_seed(seed)],
                 output_type="np").frames
    return to_uint8(np.asarray(video)[0])


@models
def test_ltx_chain_conditions_on_a_tail_window_and_drops_it(engines):
    engine = engines["ltx-video"]
    previous = tail(12)
    take = next(engine.generate(request(frames=17, seeds=[3], condition_frames=previous)))
    assert take.frames.shape == (17, 64, 64, 3)
    assert take.meta["pipeline"] == "LTXConditionPipeline"
    assert take.meta["condition_frames"] == 9 and take.meta["generated_frames"] == 33
    call = engine.plan(request(frames=17, condition_frames=previous))
    condition = call.kwargs["conditions"][0]
    assert len(condition.video) == 9 and condition.frame_index == 0
    assert np.array_equal(np.asarray(condition.video[-1]), previous[-1])
    raw = raw_frames(engine, "condition", {**call.kwargs, "prompt": [request().prompt]}, seed=3)
    assert raw.shape[0] == 33
    assert np.array_equal(take.frames, raw[9:26])
    other = next(engine.generate(request(frames=17, seeds=[3], condition_frames=tail(12, seed=3))))
    assert not np.array_equal(take.frames, other.frames)


@models
def test_ltx_bridge_pins_the_next_shot_at_the_last_kept_frame(engines):
    engine = engines["ltx-video"]
    target = tail(1, seed=5)[0]
    call = engine.plan(request(frames=9, condition_frames=tail(12), last_frame=target))
    assert [c.frame_index for c in call.kwargs["conditions"]] == [0, 17]
    takes = list(engine.generate(request(frames=9, seeds=[1, 2], condition_frames=tail(12),
                                         last_frame=target)))
    assert [t.frames.shape for t in takes] == [(9, 64, 64, 3)] * 2
    assert [t.meta["batch"] for t in takes] == [1, 1]  # the condition pipeline runs one at a time


@models
def test_ltx_pipelines_are_loaded_once_and_share_components(engines):
    engine = engines["ltx-video"]
    list(engine.generate(request(seeds=[1])))
    list(engine.generate(request(seeds=[1], condition_frames=tail(9))))
    text, condition = engine._pipes["text"], engine._pipes["condition"]
    assert text.transformer is condition.transformer and text.vae is condition.vae
    before = dict(engine._pipes)
    list(engine.generate(request(seeds=[2], condition_frames=tail(9))))
    assert all(engine._pipes[key] is pipe for key, pipe in before.items())


@models
def test_derived_pipelines_keep_the_chosen_dtype(tiny):
    import torch

    engine = make_engine("ltx-video", tiny, dtype="bf16")
    text = next(engine.generate(request(seeds=[1])))
    chained = next(engine.generate(request(seeds=[1], condition_frames=tail(9))))
    assert text.meta["dtype"] == chained.meta["dtype"] == "bfloat16"
    for pipe in engine._pipes.values():
        assert pipe.transformer.dtype == pipe.text_encoder.dtype == torch.bfloat16
    assert chained.frames.shape == (9, 64, 64, 3)


@models
@pytest.mark.parametrize("name", ["wan", "svd", "cogvideox"])
def test_chain_from_the_last_frame_drops_the_repeated_first_frame(engines, name):
    engine = engines[name]
    frames = FRAMES[name]
    previous = tail(4)
    chained = request(frames=frames, seeds=[4], condition_frames=previous)
    if name == "svd":
        chained.prompt = None
    take = next(engine.generate(chained))
    assert take.frames.shape == (frames, 64, 64, 3) and take.meta["condition_frames"] == 1
    call = engine.plan(chained)
    assert np.array_equal(np.asarray(call.per_take.get("image", call.kwargs.get("image"))),
                          previous[-1])
    arguments = dict(call.kwargs)
    for key, value in call.per_take.items():
        if value is not None:
            arguments[key] = [value]
    raw = raw_frames(engine, call.pipeline, arguments, seed=4)
    assert raw.shape[0] == call.window.total
    assert np.array_equal(take.frames, raw[1:1 + frames])


@models
def test_wan_bridge_ends_on_the_generated_last_frame(engines):
    engine = engines["wan"]
    target = tail(1, seed=7)[0]
    bridged = request(frames=9, seeds=[8], condition_frames=tail(4), last_frame=target)
    take = next(engine.generate(bridged))
    call = engine.plan(bridged)
    assert np.array_equal(np.asarray(call.kwargs["last_image"]), target)
    raw = raw_frames(engine, "image", {**call.kwargs, "prompt": [bridged.prompt]}, seed=8)
    assert take.frames.shape == (9, 64, 64, 3)
    assert np.array_equal(take.frames[-1], raw[-1]) and np.array_equal(take.frames[0], raw[1])
    assert take.meta["dropped_inside"] == 3


@models
def test_image_shot_keeps_its_first_frame(engines, tmp_path):
    from PIL import Image

    still = tmp_path / "still.png"
    Image.fromarray(tail(1, seed=2)[0]).save(still)
    take = next(engines["wan"].generate(request(kind="image", image=still, seeds=[1])))
    assert take.frames.shape == (9, 64, 64, 3) and take.meta["condition_frames"] == 0
    assert take.meta["pipeline"] == "WanImageToVideoPipeline"


@models
def test_requests_outside_the_models_rules_fail_clearly(engines):
    # Any count can be asked for: the call generates 17 (8k+1) and keeps 10.
    take = next(engines["ltx-video"].generate(request(frames=10)))
    assert take.frames.shape[0] == 10
    with pytest.raises(EngineError, match="split the shot"):
        next(engines["ltx-video"].generate(request(frames=250, condition_frames=tail(9))))
    with pytest.raises(EngineError, match="multiples of 16"):
        next(engines["wan"].generate(request(width=72)))
    with pytest.raises(EngineError, match="at most 25"):
        next(engines["svd"].generate(request(kind="image", frames=30)))
    with pytest.raises(EngineError, match="needs a first frame"):
        next(engines["svd"].generate(request(frames=6)))
    with pytest.raises(EngineError, match="bridge"):
        next(engines["cogvideox"].generate(request(condition_frames=tail(2),
                                                   last_frame=tail(1)[0])))


@models
def test_an_image_to_video_checkpoint_cannot_start_from_a_prompt(tiny):
    engine = make_engine("wan", tiny, model=str(tiny["wan-i2v"]), image_model=None)
    assert engine.image_model_for(engine.settings) == str(tiny["wan-i2v"])
    with pytest.raises(EngineError, match="image-to-video checkpoint"):
        next(engine.generate(request(seeds=[1])))
    take = next(engine.generate(request(seeds=[1], condition_frames=tail(2))))
    assert take.frames.shape == (9, 64, 64, 3)


@models
def test_out_of_memory_halves_the_batch_then_fails_with_advice(engines, monkeypatch):
    import torch

    engine = engines["cogvideox"]
    real = engine._invoke
    sizes = []

    def tight(call, seeds):
        sizes.append(len(seeds))
        if len(seeds) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(call, seeds)

    monkeypatch.setattr(engine, "_invoke", tight)
    takes = list(engine.generate(request(seeds=[1, 2, 3])))
    assert [t.seed for t in takes] == [1, 2, 3] and sizes[:2] == [3, 1]

    def full(call, seeds):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(engine, "_invoke", full)
    with pytest.raises(EngineError, match="out of GPU memory"):
        list(engine.generate(request(seeds=[1, 2])))


@models
def test_cuda_requested_without_a_gpu_is_unavailable(tiny):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    engine = make_engine("svd", tiny, device="cuda")
    with pytest.raises(EngineUnavailable, match="no CUDA GPU found"):
        next(engine.generate(first_request("svd", tiny["svd"].parent)))
