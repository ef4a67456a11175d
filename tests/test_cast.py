"""Cast, style and keyframes: prompts, reference images and where they go, and every
mistake located at its line.

The engines here are small registered classes that declare capabilities and make
nothing: validation and routing only read what an engine says it can do.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from lavfi import make_image

from stitchcraft import engines
from stitchcraft.engines import Capabilities, Engine, engine_class, register_engine
from stitchcraft.errors import ConfigError, StoryboardError
from stitchcraft.storyboard import CastMember, Style
from stitchcraft.storyboard.cast import PromptError, fill_prompt
from stitchcraft.storyboard.load import load_storyboard


def fake_engine(name: str, kinds: set[str], **can: bool | int) -> type[Engine]:
    return type(name.title(), (Engine,), {"NAME": name, "CAPABILITIES": Capabilities(
        kinds=frozenset(kinds), **can)})  # type: ignore[arg-type]


FAKES = [
    fake_engine("refvideo", {"prompt", "image"}, text_to_video=True, image_to_video=True, references=3),
    fake_engine("plainvideo", {"prompt", "image"}, text_to_video=True, image_to_video=True,
                condition_frames=1),
    fake_engine("textonly", {"prompt"}, text_to_video=True),
    fake_engine("imageonly", {"prompt", "image"}, image_to_video=True, condition_frames=1),
    fake_engine("stillmaker", {"keyframe"}, references=2),
    fake_engine("blindstill", {"keyframe"}),
]


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setattr(engines, "_REGISTERED", dict(engines._REGISTERED))
    for cls in FAKES:
        register_engine(cls)
    yield
    engine_class.cache_clear()


@pytest.fixture
def pictures(tmp_path):
    for name in ("courier.png", "courier-back.png", "dog.png", "look.png", "pose.png"):
        make_image(tmp_path / name, size="32x32")
    return tmp_path


BOARD = """\
version: 1
output: {size: 320x180}
cast:
  courier: {images: [courier.png, courier-back.png], description: a courier in a yellow raincoat}
  dog: {images: [dog.png], description: a small grey dog}
  narrator: {description: an old man}
style: {images: [look.png], description: "teal and orange, anamorphic"}
defaults: {engine: plainvideo, keyframe_engine: stillmaker, candidates: 3}
shots:
  - {id: ride, prompt: "{courier} rides through neon rain", cast: [dog], engine: refvideo, duration: 1}
  - id: street
    prompt: the courier stops at a kiosk
    keyframe: "a yellow raincoat at a {{neon}} kiosk, {narrator} watching"
    duration: 1
  - {id: poster, image: {prompt: "{courier} on a rooftop", candidates: 5}, duration: 1}
  - {id: follow, prompt: "{dog} runs after", continuity: chain, duration: 1}
  - {id: sleep, prompt: "{dog} sleeps", reference: pose.png, duration: 1}
  - {id: card, title: The end, duration: 1}
"""
STYLE = ", teal and orange, anamorphic"


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first line holding `needle`."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def issues_of(path):
    with pytest.raises(StoryboardError) as caught:
        load_storyboard(path)
    return caught.value.issues


def test_prompts_name_the_cast_and_end_with_the_style(write_storyboard, fakes, pictures):
    loaded = load_storyboard(write_storyboard(BOARD))
    assert loaded.prompt("ride") == "a courier in a yellow raincoat rides through neon rain" + STYLE
    assert loaded.prompt("street") == "the courier stops at a kiosk" + STYLE
    assert loaded.keyframe_prompt("street") == "a yellow raincoat at a {neon} kiosk, an old man watching" + STYLE
    assert loaded.keyframe_prompt("poster") == "a courier in a yellow raincoat on a rooftop" + STYLE
    # an implicit keyframe shows what the shot's prompt says
    assert loaded.keyframe_prompt("sleep") == loaded.prompt("sleep") == "a small grey dog sleeps" + STYLE
    assert loaded.prompt("poster") is None and loaded.prompt("card") is None
    assert loaded.keyframe_prompt("ride") is None and loaded.keyframe_prompt("follow") is None
    with pytest.raises(KeyError):
        loaded.prompt("nope")


def test_fill_prompt_form():
    cast = {"a": CastMember(description="Ann"), "b_2": CastMember(description="{b}")}
    assert fill_prompt("{a} and {b_2} {{x}} }}", cast, None) == "Ann and {b} {x} }"
    assert fill_prompt("{a} waves  \n", cast, Style(description="noir")) == "{a} waves, noir".replace("{a}", "Ann")
    assert fill_prompt("{a}", cast, Style(images=["look.png"])) == "Ann"  # no words: nothing added


def test_cast_of_a_shot_is_its_list_then_its_prompts_in_order(write_storyboard, fakes, pictures):
    text = BOARD.replace('prompt: the courier stops at a kiosk',
                         'prompt: "{dog} sees {courier}, then {dog}"\n    cast: [courier]')
    loaded = load_storyboard(write_storyboard(text))
    assert loaded.cast_of("ride") == ["dog", "courier"]
    assert loaded.cast_of("street") == ["courier", "dog", "narrator"]  # list, prompt, keyframe
    assert loaded.cast_of("poster") == ["courier"]
    assert loaded.cast_of("card") == []


def test_references_in_order_of_priority(write_storyboard, fakes, pictures):
    loaded = load_storyboard(write_storyboard(BOARD))

    def names(paths):
        return [p.name for p in paths]

    # own reference, then first images in cast order, then second images, then the style
    assert names(loaded.references("ride")) == ["dog.png", "courier.png", "courier-back.png", "look.png"]
    assert names(loaded.references("sleep")) == ["pose.png", "dog.png", "look.png"]
    assert loaded.references("ride")[0] == pictures / "dog.png"
    # one image named twice is sent once
    twice = BOARD.replace("reference: pose.png", "reference: dog.png")
    assert names(load_storyboard(write_storyboard(twice)).references("sleep")) == ["dog.png", "look.png"]
    assert loaded.cast_images("ride") == {"dog": [pictures / "dog.png"],
                                          "courier": [pictures / "courier.png", pictures / "courier-back.png"]}
    assert loaded.cast_images("street") == {}  # the narrator has no pictures
    assert loaded.style_images() == [pictures / "look.png"]


def test_each_shot_takes_its_route(write_storyboard, fakes, pictures):
    loaded = load_storyboard(write_storyboard(BOARD))
    ride = loaded.reference_route("ride")
    assert (ride.to, ride.engine, ride.limit, ride.keyframe) == ("engine", "refvideo", 3, None)
    assert [p.name for p in ride.engine_references] == ["dog.png", "courier.png", "courier-back.png"]
    assert [p.name for p in ride.left_out] == ["look.png"]

    street = loaded.keyframe("street")
    assert street is not None and (street.engine, street.origin, street.candidates) == ("stillmaker", "keyframe", 3)
    assert [p.name for p in street.references] == ["look.png"]
    assert loaded.reference_route("street").to == "keyframe"

    poster = loaded.reference_route("poster")
    assert (poster.to, poster.engine) == ("keyframe", "stills")  # the still is animated like any image
    assert poster.keyframe is not None and (poster.keyframe.origin, poster.keyframe.candidates) == ("image", 5)
    assert [p.name for p in poster.keyframe.references] == ["courier.png", "courier-back.png"]

    follow = loaded.reference_route("follow")  # starts from the previous take: nothing is sent
    assert (follow.to, follow.keyframe, follow.engine_references) == (None, None, ())
    assert [p.name for p in follow.left_out] == ["dog.png", "look.png"]

    sleep = loaded.reference_route("sleep")  # plainvideo takes none: an implicit keyframe carries them
    assert sleep.to == "keyframe" and sleep.keyframe is not None and sleep.keyframe.origin == "implicit"
    assert [p.name for p in sleep.keyframe.references] == ["pose.png", "dog.png"]

    card = loaded.reference_route("card")
    assert (card.to, card.keyframe, card.left_out) == (None, None, ())


def test_routes_follow_the_engine_a_quality_uses(write_storyboard, fakes, pictures):
    text = ROUTES.replace("output: {size: 320x180}",
                          "output: {size: 320x180}\nengines: {draft: {engine: plainvideo}}")
    loaded = load_storyboard(write_storyboard(text.replace("sleeps\",", "sleeps\", engine: refvideo,")))
    assert loaded.reference_route("a").to == "engine"
    draft = loaded.reference_route("a", quality="draft")
    assert draft.to == "keyframe" and draft.keyframe is not None and draft.keyframe.engine == "stillmaker"
    # valid as a final render; a draft's engine takes no references, nor does the keyframe's
    blind = load_storyboard(write_storyboard(text.replace("sleeps\",", "sleeps\", engine: refvideo,")
                                             .replace("keyframe_engine: stillmaker", "keyframe_engine: blindstill")))
    with pytest.raises(ConfigError, match="shot 'a': .*keyframe engine 'blindstill'"):
        blind.keyframe("a", quality="draft")


def test_a_reference_now_reaches_engines_without_references(write_storyboard, fakes, pictures):
    """`reference:` is the one-image shorthand: an engine that takes none gets a
    keyframe carrying it, and an engine that needs a starting image gets one too."""
    text = """\
    version: 1
    output: {size: 320x180}
    defaults: {keyframe_engine: stillmaker}
    shots:
      - {id: a, prompt: a dog, reference: pose.png, engine: plainvideo, duration: 1}
      - {id: b, prompt: a dog, reference: pose.png, engine: imageonly, duration: 1}
    """
    loaded = load_storyboard(write_storyboard(text))
    for shot in ("a", "b"):
        keyframe = loaded.keyframe(shot)
        assert keyframe is not None and keyframe.references == (pictures / "pose.png",)
    issues = issues_of(write_storyboard(text.replace(", reference: pose.png, engine: imageonly",
                                                     ", engine: imageonly")))
    assert [(i.field, i.line) for i in issues] == [("shots[1].prompt", 6)]
    assert "needs a starting image: give `image:`, `keyframe:` or `continuity: chain`" in issues[0].message


@pytest.mark.parametrize(("edit", "field", "needle", "expect"), [
    (("rides through", "{courir} rides through"), "shots[0].prompt", "id: ride",
     "'{courir}' names no cast member; did you mean 'courier'? (write {{ or }} for a literal brace)"),
    (("rides through", "rides { through"), "shots[0].prompt", "id: ride",
     "a lone '{' at character 17; write {{ or }} for a literal brace, and {name} for a cast member"),
    (("rides through", "rides {two words}"), "shots[0].prompt", "id: ride",
     "'{two words}' is not a placeholder: write a cast member as {name}"),
    (("cast: [dog]", "cast: [dgo]"), "shots[0].cast[0]", "id: ride",
     "'dgo' names no cast member; did you mean 'dog'?"),
    (("cast: [dog]", "cast: [dog, dog]"), "shots[0].cast[1]", "id: ride", "'dog' is listed twice"),
    (("{narrator} watching", "{narator} watching"), "shots[1].keyframe", "keyframe:",
     "'{narator}' names no cast member; did you mean 'narrator'?"),
    (('"{courier} on a rooftop"', '"{courrier} on a rooftop"'), "shots[2].image.prompt", "id: poster",
     "'{courrier}' names no cast member"),
    (("continuity: chain", "continuity: chain, keyframe: a dog"), "shots[3].keyframe", "id: follow",
     "a chained shot takes no keyframe: its first frame is the previous take's last"),
    (("reference: pose.png", "reference: pose.png, continuity: bridge, keyframe: {prompt: x}"),
     "shots[4].keyframe", "id: sleep", "a bridged shot takes no keyframe: its first frame is the previous take's last"),
    (("candidates: 5}", "candidates: 5}, keyframe: x"), "shots[2].keyframe", "id: poster",
     "an image shot starts from its image; remove `keyframe:`"),
    (("title: The end", "title: The end, cast: [dog]"), "shots[5].cast", "id: card",
     "a title card shows no one; remove `cast:`"),
    (("courier.png, courier-back.png", "courier.png, gone.png"), "cast.courier.images[1]", "courier:",
     "cast image 'gone.png' not found"),
    (("images: [look.png]", "images: [gone.png]"), "style.images[0]", "style:", "style image 'gone.png' not found"),
    (("  narrator: {", "  the-narrator: {"), "cast.the-narrator", "narrator:",
     "'the-narrator' is not a cast name: use letters, digits and _"),
    (("{narrator} watching\"", "{narrator} watching\"\n    cast: [nobody]"), "shots[1].cast[0]", "nobody",
     "'nobody' names no cast member; the cast: courier, dog, narrator"),
])
def test_mistakes_are_located(write_storyboard, fakes, pictures, edit, field, needle, expect):
    text = BOARD.replace(*edit)
    assert text != BOARD
    path = write_storyboard(text)
    issue = next(i for i in issues_of(path) if expect in i.message)
    assert issue.field == field
    assert issue.line == line_of(text, needle)
    assert str(issue).startswith(f"{path}:{issue.line}:")


ROUTES = """\
version: 1
output: {size: 320x180}
cast:
  dog: {images: [dog.png], description: a small grey dog}
defaults: {engine: plainvideo, keyframe_engine: stillmaker}
shots:
  - {id: a, prompt: "{dog} sleeps", duration: 1}
"""


@pytest.mark.parametrize(("edit", "field", "expect"), [
    # the implicit keyframe's engine takes no references: both ways out are named
    (("keyframe_engine: stillmaker", "keyframe_engine: blindstill"), "shots[0].prompt",
     "the shot has 1 reference image (cast dog) but engine 'plainvideo' takes none, and the keyframe "
     "engine 'blindstill' that would carry them takes none either; give the shot an engine that takes "
     "reference images, or make its keyframe with an image engine that takes them"),
    (("engine: plainvideo,", "engine: textonly,"), "shots[0].prompt",
     "engine 'textonly' takes none and cannot animate a keyframe that would carry them"),
    (("keyframe_engine: stillmaker", "keyframe_engine: stilmaker"), "defaults.keyframe_engine",
     "keyframe engine: unknown engine 'stilmaker'; did you mean 'stillmaker'?"),
    (("keyframe_engine: stillmaker", "keyframe_engine: refvideo"), "defaults.keyframe_engine",
     "engine 'refvideo' cannot make a keyframe (it makes: image, prompt); name an image engine"),
    (("sleeps\", duration", "sleeps\", keyframe: {engine: nope}, duration"), "shots[0].keyframe.engine",
     "keyframe engine: unknown engine 'nope'"),
    (("sleeps\", duration", "sleeps\", keyframe: {engine: blindstill}, duration"), "shots[0].keyframe.engine",
     "to condition its keyframe, but the keyframe engine 'blindstill' takes none; make the keyframe with "
     "an image engine that takes them (`keyframe: {engine: ...}`)"),
    (("sleeps\", duration", "sleeps\", keyframe: {engine: blindstill}, engine: refvideo, duration"),
     "shots[0].keyframe.engine", "or remove `keyframe:` so they go to 'refvideo' (takes 3)"),
    (("sleeps\", duration", "sleeps\", keyframe: a dog, engine: textonly, duration"), "shots[0].keyframe",
     "engine 'textonly' cannot animate a keyframe (it starts from no image)"),
    (("sleeps\", duration", "sleeps\", reference: dog.png, engine: textonly, continuity: match, duration"),
     "shots[0].reference", "engine 'textonly' takes none"),
])
def test_route_mistakes_name_the_shot_engine_and_fixes(write_storyboard, fakes, pictures, edit, field, expect):
    text = ROUTES.replace(*edit)
    assert text != ROUTES
    issue = next(i for i in issues_of(write_storyboard(text)) if expect in i.message)
    assert issue.field == field


def test_a_given_first_frame_carries_its_own_reference_only(write_storyboard, fakes, pictures):
    text = ROUTES + ("  - {id: b, prompt: onward, continuity: chain, reference: pose.png, engine: plainvideo,"
                     " duration: 1}\n")
    [issue] = issues_of(write_storyboard(text))
    assert (issue.field, issue.line) == ("shots[1].reference", 8)
    assert issue.message == ("engine 'plainvideo' takes no reference image, and this shot starts from "
                             "the previous take's last frame (continuity: chain), so no keyframe can "
                             "carry it; give the shot an engine that takes reference images, or remove "
                             "`reference:`")
    loaded = load_storyboard(write_storyboard(text.replace("engine: plainvideo,", "engine: refvideo,")))
    route = loaded.reference_route("b")
    assert (route.to, route.engine_references) == ("engine", (pictures / "pose.png",))


def test_an_unknown_keyframe_engine_is_said_once(write_storyboard, fakes, pictures):
    text = ROUTES.replace("keyframe_engine: stillmaker", "keyframe_engine: stilmaker") + (
        '  - {id: b, prompt: "{dog} wakes", duration: 1}\n')
    issues = issues_of(write_storyboard(text))
    assert [(i.field, i.line) for i in issues] == [("defaults.keyframe_engine", 5)]


def test_variant_prompts_are_checked_and_filled(write_storyboard, fakes, pictures):
    text = BOARD + "variants:\n  - name: de\n    shots: {ride: {prompt: \"{courier} fährt\"}}\n"
    loaded = load_storyboard(write_storyboard(text))
    assert loaded.storyboard.variants[0].shots["ride"].prompt == "{courier} fährt"
    bad = text.replace("{courier} fährt", "{kurier} fährt")
    [issue] = issues_of(write_storyboard(bad))
    assert issue.field == "variants[0].shots.ride.prompt" and issue.line == line_of(bad, "kurier")


def test_validate_prints_each_route(write_storyboard, fakes, pictures):
    from typer.testing import CliRunner

    from stitchcraft.cli import app

    path = write_storyboard(BOARD)
    done = CliRunner().invoke(app, ["validate", str(path)])
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[1:] == [
        "  shot ride: 3 of 4 reference images go to refvideo (takes 3)",
        "  shot street: keyframe by stillmaker; 1 reference image conditions the keyframe "
        "(stillmaker takes 2); plainvideo animates it",
        "  shot poster: keyframe (its image) by stillmaker; 2 of 3 reference images condition the "
        "keyframe (stillmaker takes 2); stills animates it",
        "  shot follow: 2 cast or style images are not sent: the shot starts from the previous "
        "take's last frame (continuity: chain)",
        "  shot sleep: keyframe (implicit) by stillmaker; 2 of 3 reference images condition the "
        "keyframe (stillmaker takes 2); plainvideo animates it",
    ]
    as_json = json.loads(CliRunner().invoke(app, ["validate", str(path), "--json"]).output)
    assert as_json["ok"] and len(as_json["routes"]) == 5

    wrong = write_storyboard(BOARD.replace("{courier} rides", "{courir} rides"))
    failed = CliRunner().invoke(app, ["validate", str(wrong)])
    assert failed.exit_code == 2
    assert f"{wrong}:{line_of(BOARD, 'id: ride')}:" in failed.output and "'{courir}'" in failed.output


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="{}ab_ 1", max_size=30))
@example(text="{a}}}}}")  # placeholder, then two escapes: a replace() of "}}" split it wrongly
def test_any_prompt_is_filled_or_refused_with_a_reason(text):
    """Placeholders and escapes follow str.format's rules (an implementation of its own):
    what it can fill with the cast, a prompt fills the same; what it refuses, a prompt
    refuses with a reason."""
    cast = {"a": CastMember(description="Ann"), "b": CastMember(description="Bob")}
    try:
        expected = text.format(a="Ann", b="Bob")
    except (ValueError, KeyError, IndexError):
        expected = None
    try:
        filled = fill_prompt(text, cast, None)
    except PromptError as exc:
        assert str(exc) and expected is None
    else:
        assert filled == expected


def test_a_wrong_prompt_on_an_engine_that_needs_an_image_is_said_once(write_storyboard, fakes, pictures):
    text = ROUTES.replace('"{dog} sleeps"', '"{dgo} sleeps", engine: imageonly, cast: [cat]')
    issues = issues_of(write_storyboard(text))
    assert [i.field for i in issues] == ["shots[0].prompt", "shots[0].cast[0]"]


def test_an_engine_that_cannot_make_the_shot_is_said_once(write_storyboard, fakes, pictures):
    text = ROUTES.replace('prompt: "{dog} sleeps"', 'image: {prompt: "{dog} sleeps"}, engine: textonly')
    [issue] = issues_of(write_storyboard(text))
    assert issue.field == "shots[0].engine" and "cannot make an image shot" in issue.message
