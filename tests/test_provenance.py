"""Content credentials: every cut is signed with a C2PA manifest that says what made each
shot, read back here with the official c2pa library; tampering breaks it."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import c2pa
import numpy as np
import pytest
from lavfi import make_video
from test_render import stitch

from stitchcraft import engines
from stitchcraft.engines import Capabilities, Engine, Take, engine_class, register_engine
from stitchcraft.errors import ConfigError
from stitchcraft.media import container_tags
from stitchcraft.provenance import (
    ASSERTION,
    CERT_ENV,
    DEVELOPMENT_NAME,
    KEY_ENV,
    make_certificate,
    sidecar_path,
    signing_identity,
)
from stitchcraft.render import render
from stitchcraft.storyboard.load import load_storyboard

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"

BOARD = """
version: 1
title: Credentials
output: {fps: 24, size: 160x90, path: out/cut.mp4, preset: ultrafast}
defaults: {candidates: 1, seed: 3}
shots:
  - id: opening
    title: {text: "Hello"}
    duration: 0.5
  - id: real
    source: clips
    duration: 0.5
"""


class Painter(Engine):
    """A generative engine for tests: grey takes, its model and seed recorded."""

    NAME = "painter"
    CAPABILITIES = Capabilities(kinds=frozenset({"prompt"}), text_to_video=True)

    def generate(self, request):
        for seed in request.seeds:
            frames = np.full((request.frames, request.height, request.width, 3), 40 + seed % 100, np.uint8)
            yield Take(frames=frames, seed=seed, label=f"grey {seed}", meta={"model": "test/painter-1"})


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "clips").mkdir()
    make_video(tmp_path / "clips" / "a.mp4", seconds=1, size="160x90", source="testsrc2", audio=None)
    (tmp_path / "board.yaml").write_text(BOARD)
    return tmp_path


@pytest.fixture
def studio(tmp_path: Path) -> dict[str, str]:
    """A signer the user configures: a certificate chain and key of their own."""
    key, chain = make_certificate("Example Studio signer", "Example Studio CA", "Example Studio")
    (tmp_path / "studio.pem").write_bytes(chain)
    (tmp_path / "studio.key").write_bytes(key)
    return {CERT_ENV: str(tmp_path / "studio.pem"), KEY_ENV: str(tmp_path / "studio.key")}


def manifest_of(video: Path) -> tuple[str, dict]:
    with c2pa.Reader(str(video)) as reader:
        store = json.loads(reader.json())
        return reader.get_validation_state(), store["manifests"][store["active_manifest"]]


def assertion(manifest: dict, label: str) -> dict:
    return next(a["data"] for a in manifest["assertions"] if a["label"].startswith(label))


def flip_mdat_byte(video: Path) -> None:
    data = bytearray(video.read_bytes())
    at = 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"mdat":
            data[at + 8 + (size - 8) // 2] ^= 0xFF
            video.write_bytes(bytes(data))
            return
        at += size
    raise AssertionError("no mdat box")


def test_cut_is_signed_with_its_shots_and_tampering_is_caught(project, studio):
    stitch("render", "board.yaml", cwd=project, env=studio)
    video = project / "out" / "cut.mp4"
    state, manifest = manifest_of(video)
    assert state == "Valid"  # intact; "Trusted" would need the studio's CA on a trust list
    assert manifest["signature_info"]["common_name"] == "Example Studio signer"
    assert manifest["claim_generator_info"][0]["name"] == "stitchcraft"
    facts = assertion(manifest, ASSERTION)
    assert facts["storyboard"] == "board.yaml"
    assert facts["storyboard_sha256"] == hashlib.sha256((project / "board.yaml").read_bytes()).hexdigest()
    assert facts["ai_generated"] is False
    shots = {s["id"]: s for s in facts["shots"]}
    assert shots["opening"]["source"] == "title"
    assert shots["opening"]["digital_source_type"] == IPTC + "digitalCreation"
    assert (shots["real"]["source"], shots["real"]["file"]) == ("footage", "a.mp4")
    assert shots["real"]["digital_source_type"] is None  # stitchcraft does not vouch for footage
    actions = assertion(manifest, "c2pa.actions")["actions"]
    assert actions[0]["action"] == "c2pa.created"
    assert actions[0]["digitalSourceType"] == IPTC + "composite"
    placed = {a["parameters"]["org.stitchcraft.shot"]: a for a in actions if a["action"] == "c2pa.placed"}
    assert placed["opening"]["digitalSourceType"] == IPTC + "digitalCreation"
    assert "digitalSourceType" not in placed["real"]
    # the same facts in the container's tags and the sidecar
    tags = container_tags(video)
    assert json.loads(tags["description"])["shots"] == facts["shots"]
    assert tags["comment"].startswith("Made with stitchcraft")
    sidecar = json.loads(sidecar_path(video).read_text())
    assert sidecar["shots"] == facts["shots"]
    assert sidecar["video_sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()
    assert sidecar["c2pa"]["signer"] == "Example Studio signer" and not sidecar["c2pa"]["development_certificate"]
    shown = stitch("inspect", "out/cut.mp4", cwd=project)
    assert "C2PA manifest: valid, signer not trusted" in shown.stdout
    assert "shot opening: title (digitalCreation)" in shown.stdout
    assert "shot real: footage" in shown.stdout and "matches this file" in shown.stdout

    flip_mdat_byte(video)
    assert manifest_of(video)[0] == "Invalid"
    shown = stitch("inspect", "out/cut.mp4", "--json", cwd=project, check=False)
    assert shown.returncode == 1
    report = json.loads(shown.stdout)
    assert report["validation"] == "invalid" and report["sidecar_matches"] is False
    assert any("assertion.bmffHash.mismatch" in f for f in report["failures"])


@pytest.fixture
def painter(monkeypatch):
    monkeypatch.setattr(engines, "_REGISTERED", dict(engines._REGISTERED))
    register_engine(Painter)
    yield Painter
    engine_class.cache_clear()


def test_generated_shot_is_marked_trained_algorithmic_media(project, painter, monkeypatch):
    monkeypatch.delenv(CERT_ENV, raising=False)
    monkeypatch.delenv(KEY_ENV, raising=False)
    (project / "board.yaml").write_text(BOARD + "  - id: dream\n    prompt: a grey room\n"
                                                "    engine: painter\n    duration: 0.5\n")
    result = render(load_storyboard(project / "board.yaml"))
    video = result.outputs[0].path
    assert any(DEVELOPMENT_NAME in w for w in result.warnings)
    state, manifest = manifest_of(video)
    assert state == "Valid" and manifest["signature_info"]["common_name"] == DEVELOPMENT_NAME
    facts = assertion(manifest, ASSERTION)
    assert facts["ai_generated"] is True
    dream = next(s for s in facts["shots"] if s["id"] == "dream")
    assert dream["source"] == "generated"
    assert dream["digital_source_type"] == IPTC + "trainedAlgorithmicMedia"
    chosen = json.loads(result.manifest.read_text())["shots"]["dream"]["segments"][0]["candidates"][0]
    assert dream["takes"] == [{"engine": "painter", "seed": chosen["seed"], "model": "test/painter-1",
                               "provider": None}]
    actions = assertion(manifest, "c2pa.actions")["actions"]
    assert actions[0]["digitalSourceType"] == IPTC + "compositeWithTrainedAlgorithmicMedia"
    placed = next(a for a in actions if a.get("parameters", {}).get("org.stitchcraft.shot") == "dream")
    assert placed["digitalSourceType"] == IPTC + "trainedAlgorithmicMedia"
    assert container_tags(video)["comment"].startswith("AI-generated content: 1 of 3 shots")
    # the development signer is kept in the cache, labelled, and reused
    kept = project / ".stitchcraft" / "cache" / "credentials" / "development-signer.pem"
    assert kept.stat().st_mode & 0o077 == 0
    assert signing_identity(project / ".stitchcraft" / "cache", environ={}).key in kept.read_bytes()


def test_signer_configuration_errors_name_the_file_never_the_key(tmp_path, studio):
    with pytest.raises(ConfigError, match=f"{KEY_ENV} is not set"):
        signing_identity(tmp_path, environ={CERT_ENV: studio[CERT_ENV]})
    other_key, _ = make_certificate("Someone else", "Their CA", "Elsewhere")
    (tmp_path / "other.key").write_bytes(other_key)
    with pytest.raises(ConfigError) as caught:
        signing_identity(tmp_path, environ={**studio, KEY_ENV: str(tmp_path / "other.key")})
    assert "does not belong to the first certificate" in str(caught.value)
    assert "PRIVATE KEY" not in str(caught.value) and "PRIVATE KEY" not in repr(
        signing_identity(tmp_path, environ=studio))
    with pytest.raises(ConfigError, match="no such file"):
        signing_identity(tmp_path, environ={**studio, CERT_ENV: str(tmp_path / "missing.pem")})


def test_matroska_cut_has_tags_and_sidecar_but_no_manifest(project, studio):
    (project / "board.yaml").write_text(BOARD.replace("out/cut.mp4", "out/cut.mkv"))
    done = stitch("render", "board.yaml", cwd=project, env=studio)
    assert "Matroska cannot carry a C2PA manifest" in done.stderr
    video = project / "out" / "cut.mkv"
    assert json.loads(container_tags(video)["description"])["shots"][1]["source"] == "footage"
    assert json.loads(sidecar_path(video).read_text())["c2pa"] == {"embedded": False}
    shown = stitch("inspect", "out/cut.mkv", cwd=project, check=False)
    assert shown.returncode == 1 and "missing" in shown.stdout
    assert "container tags (not protected)" in shown.stdout
