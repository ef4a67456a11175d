"""The keyframe engines (flux, sdxl, sd3), driven through the Engine interface on tiny
random-weight pipelines saved with save_pretrained and loaded back from disk
(tests/tiny_image_pipelines.py).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from stitchcraft.engines import SegmentRequest, engine_class
from stitchcraft.engines.diffusion.frames import to_uint8
from stitchcraft.errors import ConfigError, EngineError

models = pytest.mark.models
PROMPT = "a red car on the road at night"


def request(**changes) -> SegmentRequest:
    fields = dict(shot_id="k1", segment=0, kind="keyframe", frames=1, width=64, height=64,
                  fps=Fraction(24), seeds=[11, 12, 13], prompt=PROMPT)
    fields.update(changes)
    return SegmentRequest(**fields)


def still(path: Path, seed: int) -> Path:
    """A reference image: a coloured gradient, different per seed."""
    from PIL import Image

    ys, xs = np.mgrid[0:48, 0:40]
    pixels = np.stack([(xs * 6 + seed * 70) % 256, (ys * 5 + seed * 30) % 256,
                       np.full_like(xs, 40 + seed * 50)], axis=-1).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


# -- capabilities, settings and validation (no model loads) ------------------------------

@pytest.mark.parametrize(("name", "multiple", "model"), [
    ("flux", 16, "black-forest-labs/FLUX.1-schnell"),
    ("sdxl", 8, "stabilityai/stable-diffusion-xl-base-1.0"),
    ("sd3", 16, "stabilityai/stable-diffusion-3.5-medium"),
])
def test_keyframe_engines_declare_one_still_per_take(name, multiple, model):
    cls = engine_class(name)
    caps = cls.capabilities_for(None)
    assert caps.kinds == frozenset({"keyframe"}) and caps.batches and caps.needs_gpu
    assert caps.size_multiple == multiple and caps.references == 0 and caps.max_frames == 1
    assert not caps.text_to_video and not caps.image_to_video
    assert cls.model_for(cls.settings_for(None)) == model
    assert cls.model_for(cls.settings_for({"model": "/models/mine"})) == "/models/mine"


def test_flux_defaults_suit_schnell():
    cls = engine_class("flux")
    assert (cls.DEFAULT_STEPS, cls.DEFAULT_GUIDANCE) == (4, 0.0)
    assert cls.fingerprint(None)["defaults"] == {"steps": 4, "guidance": 0.0}


def test_an_ip_adapter_makes_one_reference_and_enters_the_fingerprint():
    cls = engine_class("sdxl")
    adapter = {"model": "h94/IP-Adapter", "subfolder": "sdxl_models",
               "weight_name": "ip-adapter_sdxl.safetensors"}
    assert cls.capabilities_for({"ip_adapter": adapter}).references == 1
    assert cls.CAPABILITIES.references == 0
    plain = cls.fingerprint({"device": "cpu"})
    weak = cls.fingerprint({"ip_adapter": {**adapter, "scale": 0.3}})
    strong = cls.fingerprint({"ip_adapter": {**adapter, "scale": 0.9}})
    assert weak["settings"]["ip_adapter"]["scale"] == 0.3
    assert len({repr(plain), repr(weak), repr(strong)}) == 3


def test_ip_adapter_settings_are_checked():
    cls = engine_class("flux")
    with pytest.raises(ConfigError, match="ip_adapter.weight_name"):
        cls.settings_for({"ip_adapter": {"model": "XLabs-AI/flux-ip-adapter"}})
    with pytest.raises(ConfigError, match="ip_adapter.scale"):
        cls.settings_for({"ip_adapter": {"model": "m", "weight_name": "w.safetensors", "scale": 3}})
    with pytest.raises(ConfigError, match="ip_adapter.weights"):
        cls.settings_for({"ip_adapter": {"model": "m", "weight_name": "w", "weights": "x"}})


@pytest.mark.parametrize(("name", "changes", "message"), [
    ("flux", {"width": 72}, "size 72x64; width and height must be multiples of 16"),
    ("sd3", {"height": 56}, "must be multiples of 16"),
    ("sdxl", {"width": 60}, "must be multiples of 8"),
    ("sdxl", {"kind": "prompt"}, "cannot make a 'prompt' shot (serves keyframe)"),
    ("sdxl", {"frames": 2}, "2 frames; at most 1 per call"),
    ("sdxl", {"seeds": []}, "no seeds requested"),
    ("flux", {"condition_frames": np.zeros((1, 64, 64, 3), np.uint8)}, "starts from the prompt alone"),
    ("flux", {"last_frame": np.zeros((64, 64, 3), np.uint8)}, "cannot end on a given frame"),
])
def test_requests_a_keyframe_engine_cannot_serve_fail_before_loading(name, changes, message):
    engine = engine_class(name)(engine_class(name).settings_for({"device": "cpu"}))
    with pytest.raises(EngineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        next(engine.generate(request(**changes)))
    assert not engine._pipes


@models  # the availability checks past 'packages missing' need the model stack
def test_missing_ip_adapter_weights_are_named(tmp_path):
    cls = engine_class("sdxl")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model_index.json").write_text("{}")
    settings = {"model": str(tmp_path / "model"), "device": "cpu",
                "ip_adapter": {"model": str(tmp_path / "adapter"), "subfolder": "sdxl_models",
                               "weight_name": "ip.safetensors"}}
    available = cls.availability(settings)
    assert not available
    assert available.reason == (f"IP-Adapter weights {tmp_path}/adapter/sdxl_models/"
                                "ip.safetensors not found")


# -- engines on tiny pipelines -----------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("diffusers")
    from tiny_image_pipelines import build_tiny_image_pipelines

    return build_tiny_image_pipelines(tmp_path_factory.mktemp("tiny-image-pipelines"))


def make_engine(name: str, tiny_images: dict[str, Path], **changes):
    settings = {"model": str(tiny_images[name]), "device": "cpu", "dtype": "fp32", "steps": 2,
                **changes}
    cls = engine_class(name)
    return cls(cls.settings_for(settings))


@pytest.fixture(scope="module")
def engines(tiny_images):
    """One engine per family, kept across tests as a render keeps it across shots."""
    made = {name: make_engine(name, tiny_images) for name in ["flux", "sdxl"]}
    yield made
    for engine in made.values():
        engine.close()


def raw_still(engine, call_kwargs: dict, seed: int, prompt: str = PROMPT) -> np.ndarray:
    """The pipeline's own output for one seed, called directly: the reference pixels."""
    import torch

    pipe = engine._pipes["text"]
    images = pipe(prompt=[prompt], **call_kwargs, output_type="np",
                  generator=[torch.Generator("cpu").manual_seed(seed)]).images
    return to_uint8(np.asarray(images))


@models
@pytest.mark.parametrize(("name", "pipeline"), [("flux", "FluxPipeline"),
                                                ("sdxl", "StableDiffusionXLPipeline")])
def test_the_auto_pipeline_loads_the_checkpoint(tiny_images, name, pipeline, monkeypatch):
    import diffusers

    loaded = []
    real = diffusers.AutoPipelineForText2Image.from_pretrained.__func__

    def spy(cls, model, **kwargs):
        loaded.append((model, kwargs.get("local_files_only"), kwargs.get("trust_remote_code")))
        return real(cls, model, **kwargs)

    monkeypatch.setattr(diffusers.AutoPipelineForText2Image, "from_pretrained", classmethod(spy))
    engine = make_engine(name, tiny_images)
    assert engine.availability(engine.settings)
    take = next(engine.generate(request(seeds=[1])))
    assert loaded == [(str(tiny_images[name]), True, None)]
    assert take.meta["pipeline"] == pipeline == type(engine._pipes["text"]).__name__
    assert take.meta["model"] == str(tiny_images[name])


@models
@pytest.mark.parametrize("name", ["flux", "sdxl"])
def test_a_seed_makes_the_same_still_in_any_batch(engines, name):
    engine = engines[name]
    engine.settings = engine.settings.model_copy(update={"batch": 2})
    try:
        pairs = list(engine.generate(request()))
        again = list(engine.generate(request()))
    finally:
        engine.settings = engine.settings.model_copy(update={"batch": None})
    engine.settings = engine.settings.model_copy(update={"batch": 1})
    try:
        singles = list(engine.generate(request()))
    finally:
        engine.settings = engine.settings.model_copy(update={"batch": None})
    assert [t.seed for t in pairs] == [t.seed for t in singles] == [11, 12, 13]
    assert [t.meta["batch"] for t in pairs] == [2, 2, 1]
    assert [t.meta["batch"] for t in singles] == [1, 1, 1]
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(pairs, again, strict=True))
    call = engine.plan(request())
    for batched, alone in zip(pairs, singles, strict=True):
        assert batched.frames.dtype == np.uint8 and batched.frames.shape == (1, 64, 64, 3)
        assert np.array_equal(alone.frames, raw_still(engine, call.kwargs, alone.seed))
        # Not bit-exact on CPU: batched kernels sum in another order (about 2e-6 apart
        # in [0, 1]), which moves a rare pixel by one level after rounding.
        difference = np.abs(batched.frames.astype(int) - alone.frames.astype(int))
        assert difference.max() <= 1 and (difference > 0).mean() < 0.001
    assert not np.array_equal(pairs[0].frames, pairs[1].frames)
    assert pairs[0].frames.std() > 5  # a picture, not a flat field


@models
@pytest.mark.parametrize("name", ["flux", "sdxl"])
def test_a_fresh_engine_reproduces_a_still(engines, tiny_images, name):
    first = next(engines[name].generate(request(seeds=[42])))
    fresh = make_engine(name, tiny_images)
    second = next(fresh.generate(request(seeds=[42])))
    other = next(fresh.generate(request(seeds=[43])))
    assert np.array_equal(first.frames, second.frames)
    assert not np.array_equal(first.frames, other.frames)


@models
@pytest.mark.parametrize(("name", "guidance"), [("flux", 0.0), ("sdxl", 5.0)])
def test_the_take_records_how_it_was_made(engines, name, guidance):
    take = next(engines[name].generate(request(seeds=[7], width=96, height=64)))
    assert take.frames.shape == (1, 64, 96, 3)
    meta = take.meta
    assert meta["seed"] == take.seed == 7 and meta["steps"] == 2 and meta["guidance"] == guidance
    assert meta["dtype"] == "float32" and meta["device"] == "cpu" and meta["batch"] == 1
    assert meta["seconds"] > 0 and meta["generated_frames"] == 1
    assert take.label == f"{name} seed 7"


@models
def test_negative_prompts_steer_sdxl_and_are_declared_unused_by_flux(engines):
    plain = next(engines["sdxl"].generate(request(seeds=[3])))
    steered = next(engines["sdxl"].generate(request(seeds=[3], negative_prompt="blue sky")))
    assert not np.array_equal(plain.frames, steered.frames)
    flux = next(engines["flux"].generate(request(seeds=[3], negative_prompt="blue sky")))
    assert flux.meta["negative_prompt"] == "not used: this model takes no negative prompt"


@models
def test_references_without_an_adapter_are_recorded_as_unused(engines, tmp_path):
    take = next(engines["sdxl"].generate(request(seeds=[3], references=[still(tmp_path / "a.png", 1)])))
    assert take.meta["reference"] == "not used: this model takes no reference image"


def adapter_settings(name: str, tiny_images: dict[str, Path]) -> dict:
    from tiny_image_pipelines import IP_ADAPTER_SUBFOLDER, IP_ADAPTER_WEIGHTS

    folder = tiny_images[f"{name}-ip-adapter"]
    if name == "sdxl":  # h94's layout: the file and its image encoder in a subfolder
        return {"model": str(folder), "subfolder": IP_ADAPTER_SUBFOLDER,
                "weight_name": IP_ADAPTER_WEIGHTS, "scale": 1.0}
    return {"model": str(folder), "weight_name": IP_ADAPTER_WEIGHTS, "scale": 1.0,
            "image_encoder": str(folder / "image_encoder")}


@models
@pytest.mark.parametrize("name", ["flux", "sdxl"])
def test_an_ip_adapter_takes_the_first_reference(engines, tiny_images, tmp_path, name):
    engine = make_engine(name, tiny_images, ip_adapter=adapter_settings(name, tiny_images))
    assert engine.availability(engine.settings)
    assert engine.capabilities_for(engine.settings).references == 1
    first, second = still(tmp_path / "first.png", 1), still(tmp_path / "second.png", 2)
    guided = list(engine.generate(request(seeds=[5, 6], references=[first, second])))
    alone = next(engine.generate(request(seeds=[6], references=[first])))
    other = next(engine.generate(request(seeds=[5], references=[second])))
    unguided = next(engine.generate(request(seeds=[5])))
    without_adapter = next(engines[name].generate(request(seeds=[5])))
    assert type(engine._pipes["text"].image_encoder).__name__ == "CLIPVisionModelWithProjection"
    assert guided[0].meta["reference"] == str(first) and guided[0].meta["ip_adapter_scale"] == 1.0
    assert guided[0].label == f"{name} seed 5, reference first.png"
    # Batched, the one reference image is shared by the takes.
    difference = np.abs(guided[1].frames.astype(int) - alone.frames.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.001
    assert not np.array_equal(guided[0].frames, other.frames)  # the reference steers
    assert not np.array_equal(guided[0].frames, unguided.frames)
    # Without a reference the adapter is muted (scale 0): the plain model's pixels.
    assert unguided.meta["reference"] is None and unguided.meta["ip_adapter_scale"] == 0.0
    assert np.array_equal(unguided.frames, without_adapter.frames)
    engine.close()


@models
def test_an_adapter_that_cannot_load_says_which(tmp_path, tiny_images):
    from stitchcraft.errors import EngineUnavailable

    engine = make_engine("sdxl", tiny_images, ip_adapter={
        "model": str(tmp_path / "none"), "weight_name": "ip.safetensors"})
    with pytest.raises(EngineUnavailable, match=f"cannot load IP-Adapter '{tmp_path}/none'"):
        next(engine.generate(request(seeds=[1])))
