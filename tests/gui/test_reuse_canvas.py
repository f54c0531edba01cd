"""Reuse parameters puts back what a picture was made with beyond the form: its ControlNet
units (a missing control image gets one sentence), its regions, its expansion, forward
process and upscale, from the history and from a dropped picture."""

from __future__ import annotations

from PIL import Image, ImageDraw

from engine.api import ControlUnit, Expand, ForwardProcess, RegionPrompt, Upscale
from engine.metadata import save_png


def right_quarter(size=(64, 48)) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, (48, 0, 64, 48))
    return mask


def made_with(window, **changes: object):
    values: dict = {"prompt": "a house", "width": 64, "height": 48, "seed": 7, **changes}
    return window.form.build_request().with_changes(**values)


def test_reusing_a_result_puts_its_units_and_regions_back_in_the_docks(
    qtbot, window, fake_engine, tmp_path
):
    window.workspace.put_picture(Image.new("RGB", (64, 48), (90, 120, 200)))
    edges = tmp_path / "edges.png"
    Image.new("RGB", (64, 48)).save(edges)
    dock = window.control_dock
    from_file, drawn = dock.add_unit(), dock.add_unit()
    from_file.model.setText("depth-model")
    from_file.source.setCurrentText("File")
    from_file.image_path.setText(str(edges))
    from_file.weight.setValue(0.6)
    from_file.start.setValue(0.2)
    drawn.model.setText("scribble-model")
    drawn.source.setCurrentText("Sketch layer")
    drawn.preprocessor.setCurrentIndex(drawn.preprocessor.findData("scribble"))
    dock.sketch.fill_box(0.0, 0.0, 0.25, 1.0)
    row = window.regions_dock.add_region()
    row.prompt.setText("a red door")
    row.layer.set_mask(right_quarter(), "test")
    window.form.width, window.form.height = 64, 48
    job = window.workspace.generate()
    qtbot.waitUntil(lambda: window.workspace.history.find_run(job) is not None, timeout=10000)
    # The docks move on, then the result's parameters come back.
    for box in list(dock.units):
        dock.remove_unit(box)
    dock.sketch.clear()
    window.regions_dock.remove_region(row)
    window.workspace.reuse_parameters(window.workspace.history.entries()[0])
    assert [b.model.text() for b in dock.units] == ["depth-model", "scribble-model"]
    first, second = dock.units
    assert first.source.currentText() == "File" and first.image_path.text() == str(edges)
    assert (first.weight.value(), first.start.value()) == (0.6, 0.2)
    assert second.source.currentText() == "Sketch layer"
    assert second.preprocessor.currentData() == "scribble"
    sketch = dock.sketch.alpha()
    assert sketch[:, :14].min() > 200 and sketch[:, 20:].max() == 0
    (region,) = window.regions_dock.rows
    assert region.prompt.text() == "a red door"
    assert region.layer.alpha()[:, 50:].min() > 200 and region.layer.alpha()[:, :44].max() == 0
    assert window.workspace.error == ""


def test_a_dropped_picture_gives_its_units_and_regions_and_names_a_missing_image(
    qtbot, window, tmp_path
):
    unit = ControlUnit("canny-model", Image.new("RGB", (64, 48)), 0.7, 0.0, 0.5, "canny",
                       str(tmp_path / "gone.png"))  # fmt: skip
    request = made_with(
        window, controls=(unit,), regions=(RegionPrompt("a red door", right_quarter()),)
    )
    path = tmp_path / "made.png"
    save_png(Image.new("RGB", (64, 48)), path, request, 7)
    assert window.workspace.open_image(path)
    window.workspace.reuse_parameters(window.workspace.history.entries()[0])
    (box,) = window.control_dock.units
    assert (box.model.text(), box.weight.value(), box.end.value()) == ("canny-model", 0.7, 0.5)
    assert box.preprocessor.currentData() == "canny"
    assert box.image_path.text() == str(tmp_path / "gone.png")
    error = window.workspace.error
    assert "gone.png no longer exists" in error and error.count(".") <= 3
    assert window.form.prompt == "a house" and window.form.seed == 7  # nothing else is lost
    (row,) = window.regions_dock.rows
    assert row.prompt.text() == "a red door" and row.layer.alpha()[:, 56].min() > 200


def test_reuse_puts_back_an_expansion_a_forward_process_and_an_upscale(qtbot, window, tmp_path):
    picture = Image.new("RGB", (64, 48))
    ImageDraw.Draw(picture).rectangle((8, 8, 30, 30), fill="white")
    workspace = window.workspace
    for n, changes in enumerate(
        [
            {
                "expand": Expand(left=32, top=16, fill="noise", band=8),
                "init_image": picture,
                "strength": 0.8,
                "width": 96,
                "height": 64,
            },
            {"forward": ForwardProcess(level=9, denoise=True), "init_image": picture, "steps": 30},
            {
                "upscale": Upscale(scale=3.0, upscaler="Nearest", sd_tiles=True),
                "init_image": picture,
            },
        ]  # fmt: skip
    ):
        path = tmp_path / f"p{n}.png"
        save_png(picture, path, made_with(window, **changes), 11)
        assert workspace.open_image(path)
        workspace.reuse_parameters(workspace.history.entries()[0])
    dialog = window.expand_dialog()
    choice = dialog.choice()
    assert choice.expand == Expand(left=32, top=16, fill="noise", band=8)
    assert choice.strength == 0.8 and not choice.piece_by_piece
    dialog.reject()
    panel = window.forward_panel
    assert (panel.steps.value(), panel.slider.value(), panel.seed.value()) == (30, 9, 11)
    form = window.form
    assert (form.upscale_scale, form.upscale_upscaler, form.upscale_sd_tiles) == (
        3.0, "Nearest", True,
    )  # fmt: skip
