"""The ControlNet and Regions docks follow a picture into an expansion and "denoise from
here"; a continued run keeps the units and regions it ran with."""

from __future__ import annotations

from PIL import Image

from engine.api import Expand


def set_up_docks(window) -> None:
    window.workspace.put_picture(Image.new("RGB", (64, 48), (90, 120, 200)))
    unit = window.control_dock.add_unit()
    unit.model.setText("canny-model")
    unit.preprocessor.setCurrentIndex(unit.preprocessor.findData("canny"))
    row = window.regions_dock.add_region()
    row.prompt.setText("a red circle")
    row.layer.fill_box(0.0, 0.0, 0.5, 1.0)


def test_an_expansion_takes_the_docks_units_and_regions_at_the_pictures_size(
    qtbot, window, fake_engine
):
    set_up_docks(window)
    assert window.workspace.expand(Expand(left=16, right=16)) is not None
    qtbot.waitUntil(lambda: len(fake_engine.submitted) == 1)
    sent = fake_engine.submitted[0]
    assert (sent.width, sent.height) == (96, 48)
    assert sent.controls[0].image.size == (64, 48) and sent.controls[0].preprocessor == "canny"
    assert sent.regions[0].prompt == "a red circle" and sent.regions[0].mask.size == (64, 48)


def test_denoise_from_here_takes_the_docks_but_the_slider_view_does_not(qtbot, window, fake_engine):
    set_up_docks(window)
    picture = window.workspace.document.picture()
    assert window.workspace.denoise_from(picture, level=3, steps=6, seed=5) is not None
    qtbot.waitUntil(lambda: len(fake_engine.submitted) == 1)
    sent = fake_engine.submitted[0]
    assert len(sent.controls) == 1 and len(sent.regions) == 1
    view = window.forward_panel
    view.picture = picture
    request = view.request(2)
    assert request is not None and request.controls == () and request.regions == ()


def test_a_continued_run_keeps_the_units_it_ran_with(qtbot, window, fake_engine):
    set_up_docks(window)
    job = window.workspace.generate()
    assert job is not None
    qtbot.waitUntil(lambda: window.workspace.history.find_run(job) is not None, timeout=10000)
    first = fake_engine.submitted[0]
    window.control_dock.units[0].model.setText("another-model")  # the dock moved on
    assert window.workspace.continue_from(job, 1) is not None
    qtbot.waitUntil(lambda: len(fake_engine.submitted) == 2)
    again = fake_engine.submitted[1]
    assert [u.model for u in again.controls] == ["canny-model"]
    assert again.controls == first.controls and again.regions == first.regions
    assert again.resume is not None and again.resume.step == 1
