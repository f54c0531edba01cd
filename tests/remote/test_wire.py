"""engine.wire: every request and event survives the trip to JSON and back."""

from __future__ import annotations

import base64
import dataclasses
import io
import json

import numpy as np
import pytest
from engine_helpers import box_mask, picture, request
from PIL import Image

from engine import wire
from engine.api import (
    Cancelled,
    ErrorKind,
    Failed,
    Finished,
    ModelLoading,
    Queued,
    ResumeFrom,
    Started,
    Step,
)
from engine.wire import WireError


def trip(data: dict) -> dict:
    return json.loads(json.dumps(data))


def test_a_request_with_pictures_comes_back_equal_pixel_for_pixel():
    req = request(init_image=picture(), mask=box_mask(), resume=ResumeFrom(3, 2), seed=2**63)
    back = wire.request_from_dict(trip(wire.request_to_dict(req)))
    assert np.array_equal(np.asarray(back.init_image), np.asarray(req.init_image))
    assert np.array_equal(np.asarray(back.mask), np.asarray(req.mask))
    assert back.with_changes(init_image=None, mask=None) == req.with_changes(
        init_image=None, mask=None
    )


def test_unknown_request_fields_are_refused_by_name():
    data = wire.request_to_dict(request())
    data["steps_per_second"] = 3
    with pytest.raises(WireError, match="steps_per_second"):
        wire.request_from_dict(data)


def test_wrong_value_types_pass_through_for_validation_to_name():
    data = wire.request_to_dict(request())
    data["width"] = "wide"
    assert wire.request_from_dict(data).width == "wide"


@pytest.mark.parametrize(
    "bad, message",
    [
        ("not base64!", "base64"),
        (base64.b64encode(b"plain text").decode(), "not a picture"),
        (12, "base64 text"),
    ],
)
def test_a_bad_picture_is_a_wire_error_saying_what_is_wrong(bad, message):
    data = wire.request_to_dict(request())
    data["init_image"] = bad
    with pytest.raises(WireError, match=message):
        wire.request_from_dict(data)


def test_a_picture_too_large_is_refused_from_its_header():
    buffer = io.BytesIO()
    Image.new("L", (5000, 4000)).save(buffer, format="PNG")
    text = base64.b64encode(buffer.getvalue()).decode()
    with pytest.raises(WireError, match="5000x4000"):
        wire.decode_image(text)


def test_every_event_kind_round_trips():
    ramp = np.linspace(0, 255, 16, dtype=np.uint8)
    rgb = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], 128 + 0 * ramp[None, :]), -1)
    req = request(seed=5)
    events = [
        Queued(1, 2),
        ModelLoading(1, "tiny", "loading unet", 0.5),
        Started(1, 4, "tiny", "cpu (float32)", (5,)),
        Step(1, 2, 4, 0.25, rgb, rgb),
        Finished(1, (picture(),), (5,), req, {"total": 1.0}, (rgb,), (rgb,), ("short",)),
        Cancelled(1, 3),
        Failed(1, ErrorKind.OUT_OF_MEMORY, "too big", "trace"),
    ]
    for event in events:
        back = wire.event_from_dict(trip(wire.event_to_dict(event, "abc")), 7)
        assert type(back) is type(event) and back.job_id == 7
        if isinstance(event, Step):
            # Previews are compressed: close, not exact.
            assert back.preview.shape == rgb.shape
            assert np.abs(back.preview.astype(int) - rgb).mean() < 8
        elif isinstance(event, Finished):
            assert np.array_equal(np.asarray(back.images[0]), np.asarray(picture()))
            assert back.request == req and back.warnings == ("short",)
            assert len(back.step_previews) == 1
        else:
            assert back == dataclasses.replace(event, job_id=7)


def test_a_finished_request_takes_the_pictures_back_from_the_original():
    req = request(init_image=picture(), strength=0.5)
    event = Finished(1, (picture(),), (1,), req, {}, (), ())
    data = trip(wire.event_to_dict(event, "abc"))
    assert "init_image" not in data["request"]
    back = wire.event_from_dict(data, 1, original=req)
    assert back.request.init_image is req.init_image


def test_an_event_of_unknown_kind_or_missing_fields_is_a_wire_error():
    with pytest.raises(WireError, match="unknown event kind"):
        wire.event_from_dict({"kind": "exploded", "job": "a"}, 1)
    with pytest.raises(WireError, match="position"):
        wire.event_from_dict({"kind": "queued", "job": "a"}, 1)


def test_an_event_with_values_of_the_wrong_kind_is_a_wire_error():
    with pytest.raises(WireError, match="malformed"):
        wire.event_from_dict({"kind": "queued", "job": "a", "position": "first"}, 1)
    with pytest.raises(WireError, match="malformed"):
        wire.event_from_dict(
            {
                "kind": "started",
                "job": "a",
                "total_steps": 3,
                "model": "m",
                "device": "d",
                "seeds": [1e999],
            },
            1,
        )
