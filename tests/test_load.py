"""Storyboard loading and validation: every mistake is located and actionable."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lavfi import make_image, make_video

from stitchcraft.errors import StoryboardError
from stitchcraft.storyboard.load import load_storyboard

GOOD = """
version: 1
title: Test
output: {fps: 24, size: 320x240, path: out/test.mp4}
defaults: {candidates: 2, transition: {type: dissolve, duration: 0.5}}
shots:
  - id: card
    title: Hello
    duration: 2
    transition: {type: fade, duration: 0.5}
  - id: still
    image: still.png
    duration: 2
    camera: push-in
"""


def issues_of(path):
    with pytest.raises(StoryboardError) as caught:
        load_storyboard(path)
    return caught.value.issues


@pytest.fixture
def still(tmp_path):
    return make_image(tmp_path / "still.png", size="320x240")


def test_good_storyboard_loads(write_storyboard, still):
    loaded = load_storyboard(write_storyboard(GOOD))
    sb = loaded.storyboard
    assert [s.id for s in sb.shots] == ["card", "still"]
    assert sb.shots[1].kind == "image"
    assert loaded.resolve(sb.shots[1].image) == still


def test_misspelt_key_gets_line_column_and_suggestion(write_storyboard, still):
    path = write_storyboard(GOOD.replace("    camera: push-in", "    camra: push-in"))
    [issue] = issues_of(path)
    assert issue.line == 13 and issue.column == 5
    assert issue.field == "shots[1].camra"
    assert "did you mean 'camera'" in issue.message
    assert str(issue).startswith(f"{path}:13:5: shots[1].camra:")


def test_wrong_enum_value_suggests(write_storyboard, still):
    path = write_storyboard(GOOD.replace("camera: push-in", "camera: push-inn"))
    [issue] = issues_of(path)
    assert issue.field == "shots[1].camera" and "did you mean 'push-in'" in issue.message


def test_several_problems_are_all_reported(write_storyboard, still):
    text = GOOD.replace("duration: 2\n    camera", "duration: -1\n    camera").replace("size: 320x240", "size: 321x240")
    issues = issues_of(write_storyboard(text))
    fields = {i.field for i in issues}
    assert {"output.size", "shots[1].duration"} <= fields
    assert any("even" in i.message for i in issues)


def test_missing_file_is_named(write_storyboard):
    [issue] = issues_of(write_storyboard(GOOD))  # still.png not created
    assert issue.field == "shots[1].image" and "not found" in issue.message and issue.line == 11


def test_exactly_one_content(write_storyboard, still):
    text = GOOD.replace("    image: still.png\n", "    image: still.png\n    title: Both\n")
    [issue] = issues_of(write_storyboard(text))
    assert "exactly one of prompt, source, image or title" in issue.message
    assert issue.field == "shots[1]"


def test_duplicate_ids_and_yaml_duplicate_keys(write_storyboard, still):
    issues = issues_of(write_storyboard(GOOD.replace("id: still", "id: card")))
    assert any("duplicate shot id 'card'" in i.message for i in issues)
    issues = issues_of(write_storyboard(GOOD.replace("    camera: push-in", "    camera: push-in\n    camera: drift")))
    assert any("duplicate key 'camera'" in i.message and i.line == 14 for i in issues)


def test_transition_longer_than_neighbour(write_storyboard, still):
    text = GOOD.replace("duration: 2\n    camera", "duration: 0.25\n    camera")
    issues = issues_of(write_storyboard(text))
    assert any("lasts 12 frames" in i.message and "has only 6" in i.message for i in issues)


def test_transitions_overlapping_inside_a_shot(write_storyboard, still):
    text = GOOD.replace("defaults: {candidates: 2, transition: {type: dissolve, duration: 0.5}}",
                        "defaults: {candidates: 2, transition: {type: dissolve, duration: 0.75}}") + """
  - id: end
    title: Bye
    duration: 2
"""
    text = text.replace("duration: 2\n    camera", "duration: 1.25\n    camera")
    issues = issues_of(write_storyboard(text))
    assert any("overlap inside it" in i.message and i.field == "shots[1].duration" for i in issues)


def test_first_shot_cannot_dissolve(write_storyboard, still):
    text = GOOD.replace("transition: {type: fade, duration: 0.5}", "transition: {type: dissolve, duration: 0.5}")
    [issue] = issues_of(write_storyboard(text))
    assert "first shot has no previous shot" in issue.message


def test_unknown_engine_is_caught(write_storyboard, still):
    text = GOOD.replace("    camera: push-in", "    camera: push-in\n    engine: stils")
    [issue] = issues_of(write_storyboard(text))
    assert "unknown engine 'stils'" in issue.message and "did you mean 'stills'" in issue.message


def test_source_folder_and_glob(write_storyboard, tmp_path, still):
    footage = tmp_path / "footage"
    footage.mkdir()
    for name in ("a.mp4", "b.mkv"):
        make_video(footage / name, seconds=0.5, audio=None)
    (footage / "notes.txt").write_text("x")
    text = GOOD + "  - id: real\n    source: footage\n    duration: 1\n  - id: globbed\n    source: footage/*.mkv\n    duration: 1\n"
    loaded = load_storyboard(write_storyboard(text))
    assert [p.name for p in loaded.sources["real"]] == ["a.mp4", "b.mkv"]
    assert [p.name for p in loaded.sources["globbed"]] == ["b.mkv"]
    issues = issues_of(write_storyboard(text.replace("footage/*.mkv", "footage/*.mov")))
    assert any("matches no video file" in i.message for i in issues)


def test_variant_overrides_unknown_shot(write_storyboard, still):
    text = GOOD + "variants:\n  - name: de\n    shots: {stil: {text: Hallo}}\n"
    [issue] = issues_of(write_storyboard(text))
    assert "no shot has id 'stil'" in issue.message and "did you mean 'still'" in issue.message


@pytest.mark.parametrize("text, expect", [
    ("", "empty"),
    ("version: 1\nshots: [", "YAML syntax error"),
    ("- a\n- b\n", "mapping"),
    ("version: 2\nshots: []\n", "version"),
    ("version: 1\n---\nversion: 1\n", "one YAML document"),
    ("version: 1\nshots: !!python/object:os.system {}\n", "tag"),
    ("version: 1\nx: &a [*a]\n", ""),
    ("\x00\x01", ""),
])
def test_malformed_documents_fail_cleanly(write_storyboard, text, expect):
    issues = issues_of(write_storyboard(text))
    assert issues and expect in " ".join(i.message for i in issues) + " ".join(i.field for i in issues)


def test_missing_and_folder_paths(tmp_path):
    assert "file not found" in issues_of(tmp_path / "nope.yaml")[0].message
    assert "is a folder" in issues_of(tmp_path)[0].message


yaml_text = st.text(alphabet=string.printable + "äß→", max_size=300)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=yaml_text)
def test_fuzz_random_text_never_crashes(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_storyboard(path)
    except StoryboardError as exc:
        assert exc.issues
        assert all(str(i.file) == str(path) for i in exc.issues)


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=12))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(["version", "shots", "id", "duration", "prompt", "title",
                                         "output", "size", "fps", "transition", "type", "text",
                                         "variants", "name", "defaults", "engine", "source"]),
                        children, max_size=5)),
    max_leaves=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents)
def test_fuzz_structured_documents_never_crash(tmp_path, doc):
    import yaml

    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump({"version": 1, **doc} if isinstance(doc, dict) else doc))
    try:
        load_storyboard(path)
    except StoryboardError as exc:
        assert exc.issues


MATCHED = """
version: 1
output: {fps: 24, size: 320x240, path: out/test.mp4}
defaults: {candidates: 2, transition: {type: cut}}
shots:
  - id: first
    image: still.png
    duration: 2
  - id: second
    image: still.png
    duration: 2
    continuity: match
"""


def test_match_is_accepted_for_footage_images_and_prompts(write_storyboard, still):
    loaded = load_storyboard(write_storyboard(MATCHED))
    assert [s.continuity for s in loaded.storyboard.shots] == ["cut", "match"]


@pytest.mark.parametrize(("edit", "where", "expect"), [
    (("    duration: 2\n  - id: second", "    duration: 2\n    continuity: match\n  - id: second"),
     ("shots[0].continuity", 8), "the first shot has no previous shot to match with; use 'cut'"),
    (("    image: still.png\n    duration: 2\n    continuity: match", "    title: Hi\n    duration: 2\n    continuity: match"),
     ("shots[1]", 8), "continuity: match needs takes to choose between"),
    (("    image: still.png\n    duration: 2\n  - id: second", "    prompt: street\n    duration: 2\n    continuity: bridge\n  - id: second"),
     ("shots[1].continuity", 12), "cannot match shot 'first', which bridges into it"),
    (("continuity: match", "continuity: chain"),
     ("shots[1]", 8), "needs a generated (prompt) shot; to choose the take that best continues"),
])
def test_match_mistakes_are_located(write_storyboard, still, edit, where, expect):
    path = write_storyboard(MATCHED.replace(*edit))
    issues = issues_of(path)
    issue = next(i for i in issues if expect in i.message)
    assert (issue.field, issue.line) == where
    assert str(issue).startswith(f"{path}:{where[1]}:")


@pytest.mark.parametrize(("edit", "where", "expect"), [
    (("    camera: push-in", "    camera: push-in\n    keyframe: a lighthouse"), ("shots[1].keyframe", 14),
     "an image shot starts from its image; remove `keyframe:`"),
    (("    camera: push-in", "    camera: push-in\n    cast: [keeper]"), ("shots[1].cast[0]", 14),
     "'keeper' names no cast member: the storyboard has no `cast:`"),
    (("    title: Hello", "    title: Hello\n    keyframe: {prompt: a sea}"), ("shots[0].keyframe", 8),
     "a title card has no frames to generate; `keyframe:` is for prompt shots"),
    (("shots:", "cast: {keeper: {images: [keeper.png]}}\nshots:"), ("cast.keeper.description", 5),
     "missing required field 'description'"),
    (("shots:", "style: {}\nshots:"), ("style", 5), "a style needs a description, images or both"),
])
def test_cast_and_keyframe_mistakes_are_located(write_storyboard, still, edit, where, expect):
    text = GOOD.replace(*edit)
    issue = next(i for i in issues_of(write_storyboard(text)) if expect in i.message)
    assert (issue.field, issue.line) == where
