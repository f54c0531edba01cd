"""Observable properties declared once, and the one generic bind()."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSlider,
    QSpinBox,
)

from guiapp.properties import Observable, Property
from guiapp.state import ViewModel
from guiapp.widgets.binding import bind, follow


class Sample(Observable):
    count = Property(3)
    scale = Property(1.5)
    name = Property("a")
    on = Property(False)
    scratch = Property(0, persist=False)


def test_a_property_declared_once_has_a_signal_that_fires_only_on_change(qtbot) -> None:
    sample = Sample()
    seen: list[tuple[str, object]] = []
    counts: list[int] = []
    sample.changed.connect(lambda name, value: seen.append((name, value)))
    sample.signal("count").connect(counts.append)
    sample.count = 3
    sample.count = 4.0  # a spin box's float keeps the declared int type
    sample.count = 4
    assert counts == [4] and type(sample.count) is int
    sample.name = "b"
    assert seen == [("count", 4), ("name", "b")]
    assert [p.name for p in Sample.properties()] == ["count", "scale", "name", "on", "scratch"]
    assert Sample.count.default == 3
    other = Sample()
    assert other.count == 3, "values belong to the instance"


def test_every_form_field_reaches_the_request_and_comes_back(qtbot) -> None:
    form = ViewModel()
    form.set_values({"prompt": "p", "steps": 7, "scheduler": "Euler a", "random_seed": False})
    form.seed = 2**40
    request = form.build_request()
    assert (request.prompt, request.steps, request.scheduler, request.seed) == (
        "p",
        7,
        "Euler a",
        2**40,
    )
    other = ViewModel()
    other.apply_request(request)
    assert other.values() == {**form.values(), "show_noisy": other.show_noisy}
    assert "show_noisy" in ViewModel.defaults(), "persisted though not part of a request"


def test_unknown_or_broken_values_are_skipped(qtbot) -> None:
    form = ViewModel({"steps": "many", "no_such_field": 1, "width": 64})
    assert form.steps == ViewModel.steps.default and form.width == 64


def test_bind_keeps_widget_and_property_in_step_both_ways(qtbot) -> None:
    sample = Sample()
    widgets = {
        "count": QSpinBox(),
        "scale": QDoubleSpinBox(),
        "name": QLineEdit(),
        "on": QCheckBox(),
    }
    for name, widget in widgets.items():
        qtbot.addWidget(widget)
        bind(sample, name, widget)
    assert widgets["count"].value() == 3 and widgets["name"].text() == "a"
    sample.count, sample.scale, sample.name, sample.on = 5, 2.5, "b", True
    assert widgets["count"].value() == 5 and widgets["scale"].value() == 2.5
    assert widgets["name"].text() == "b" and widgets["on"].isChecked()
    widgets["count"].setValue(9)
    qtbot.keyClicks(widgets["name"], "c")
    widgets["on"].setChecked(False)
    assert (sample.count, sample.name, sample.on) == (9, "bc", False)


def test_bind_text_boxes_and_combos_without_echo(qtbot) -> None:
    form = ViewModel()
    edit, combo = QPlainTextEdit(), QComboBox()
    combo.addItems(["Euler", "DDIM"])
    for widget in (edit, combo):
        qtbot.addWidget(widget)
    bind(form, "prompt", edit)
    bind(form, "scheduler", combo)
    edits: list[str] = []
    form.signal("prompt").connect(edits.append)
    qtbot.keyClicks(edit, "!")
    assert "!" in form.prompt and len(edits) == 1
    combo.setCurrentText("DDIM")
    assert form.scheduler == "DDIM"
    form.scheduler = "Euler"
    assert combo.currentText() == "Euler"


def test_a_clamping_widget_does_not_write_its_clamped_value_back(qtbot) -> None:
    sample = Sample()
    slider = QSlider()
    slider.setRange(0, 10)
    qtbot.addWidget(slider)
    bind(sample, "count", slider)
    sample.count = 50
    assert slider.value() == 10 and sample.count == 50


def test_follow_calls_now_and_on_every_change(qtbot) -> None:
    sample = Sample()
    label = QLabel()
    qtbot.addWidget(label)
    follow(sample, "name", label.setText)
    assert label.text() == "a"
    sample.name = "z"
    assert label.text() == "z"
