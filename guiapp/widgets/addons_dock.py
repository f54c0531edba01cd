"""The "LoRA and embeddings" dock, and the clip-skip and VAE rows of the form.

The dock lists the LoRAs and embeddings found in the model folders (the library's folder
list: DiffusionDesk's own models folder and the folders a person adds, such as an
A1111/Forge or ComfyUI `models` folder). Each LoRA has a weight slider, an optional
separate text-encoder weight, and Insert, which adds its `<lora:…>` tag to the prompt;
several LoRAs are just several tags. Embeddings are inserted by name, into the prompt
or the negative prompt. Below the lists, the dock says which LoRAs, embeddings or VAE of
a reused picture are not on this machine.

Listing folders and hashing files happen on a worker thread; results come back by
queued signal, so the window never waits on the disk.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QSlider,
    QSpinBox,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from engine.addons.files import listing, roots_of
from engine.asset_folders import AssetKind
from engine.prompts import format_lora_tag
from engine.validation import MAX_CLIP_SKIP
from guiapp.state import ViewModel
from guiapp.widgets.binding import bind, follow

WEIGHT_RANGE = (-2.0, 2.0)
SLIDER_SCALE = 100  # slider ticks per 1.0 of weight
_LISTED = (AssetKind.LORA, AssetKind.EMBEDDING, AssetKind.VAE)


def _library_folders() -> tuple[str, ...]:
    """The model library's folders: our own models folder, then the added ones."""
    from engine.library import ModelLibrary

    return tuple(str(f) for f in ModelLibrary().folders())


class _Lister(QObject):
    """Runs folder listings and metadata checks off the GUI thread."""

    listed = Signal(object, object, object)  # loras, embeddings, vaes: {name: Path}
    missingFound = Signal(str, object)  # picture name, [sentences]

    def list_folders(self, folders: tuple[str, ...]) -> None:
        def work() -> None:
            roots = roots_of(folders)
            found = [listing(kind, roots) for kind in _LISTED]
            with contextlib.suppress(RuntimeError):  # the dock closed meanwhile
                self.listed.emit(*found)

        threading.Thread(target=work, name="addon-listing", daemon=True).start()

    def check_picture(self, path: Path, folders: tuple[str, ...]) -> None:
        def work() -> None:
            from engine.metadata import missing_addons

            try:
                found = missing_addons(path, folders)
            except (OSError, ValueError) as exc:
                found = [f"its add-ons could not be checked ({exc})"]
            with contextlib.suppress(RuntimeError):
                self.missingFound.emit(path.name, found)

        threading.Thread(target=work, name="addon-check", daemon=True).start()


class _LoraRow(QWidget):
    """Weight slider, optional text-encoder weight and Insert for one LoRA."""

    insertRequested = Signal(str)

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        low, high = (int(v * SLIDER_SCALE) for v in WEIGHT_RANGE)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setRange(low, high)
        self.slider.setValue(SLIDER_SCALE)
        self.slider.setToolTip(f"{name}: weight of the LoRA (UNet; and text encoder unless set)")
        self.weight = QDoubleSpinBox(self)
        self.weight.setRange(*WEIGHT_RANGE)
        self.weight.setSingleStep(0.05)
        self.weight.setValue(1.0)
        self.slider.valueChanged.connect(lambda v: self.weight.setValue(v / SLIDER_SCALE))
        self.weight.valueChanged.connect(lambda v: self.slider.setValue(round(v * SLIDER_SCALE)))
        self.te_check = QCheckBox("TE", self)
        self.te_check.setToolTip("A separate weight for the text encoder")
        self.te_weight = QDoubleSpinBox(self)
        self.te_weight.setRange(*WEIGHT_RANGE)
        self.te_weight.setSingleStep(0.05)
        self.te_weight.setValue(1.0)
        self.te_weight.setEnabled(False)
        self.te_check.toggled.connect(self.te_weight.setEnabled)
        self.insert = QPushButton("Insert", self)
        self.insert.setToolTip(f"Add <lora:{name}:…> to the prompt")
        self.insert.clicked.connect(lambda: self.insertRequested.emit(self.tag()))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 0, 2, 0)
        for widget, stretch in (
            (self.slider, 1),
            (self.weight, 0),
            (self.te_check, 0),
            (self.te_weight, 0),
            (self.insert, 0),
        ):
            layout.addWidget(widget, stretch)

    def tag(self) -> str:
        te = self.te_weight.value() if self.te_check.isChecked() else None
        return format_lora_tag(self.name, round(self.weight.value(), 2), te)


class AddonsDock(QWidget):
    """LoRAs and embeddings from the model folders, ready to insert into the prompt."""

    def __init__(self, form: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("addonsDock")
        self._form = form
        self._lister = _Lister(self)
        self._lister.listed.connect(self._show_listing)
        self._lister.missingFound.connect(self._show_missing)
        self.vae_names: list[str] = []

        self.folders_label = QLabel(self)
        self.folders_label.setWordWrap(True)
        self.add_folder_button = QPushButton("Add models folder…", self)
        self.add_folder_button.setToolTip(
            "A DiffusionDesk, AUTOMATIC1111/Forge or ComfyUI models folder"
        )
        self.add_folder_button.clicked.connect(self._choose_folder)
        self.refresh_button = QPushButton("Refresh", self)
        self.refresh_button.clicked.connect(self.refresh)

        self.lora_table = QTableWidget(0, 2, self)
        self.lora_table.setObjectName("loraTable")
        self.lora_table.setHorizontalHeaderLabels(["LoRA", "Weight"])
        self.lora_table.horizontalHeader().setStretchLastSection(True)
        self.lora_table.verticalHeader().hide()
        self.embedding_list = QListWidget(self)
        self.embedding_list.setObjectName("embeddingList")
        self.embedding_list.itemDoubleClicked.connect(lambda item: self.insert(item.text()))
        self.insert_embedding = QPushButton("Insert name", self)
        self.insert_embedding.clicked.connect(self._insert_selected_embedding)
        self.insert_negative = QPushButton("Insert in negative", self)
        self.insert_negative.clicked.connect(lambda: self._insert_selected_embedding(negative=True))
        self.missing_label = QLabel(self)
        self.missing_label.setObjectName("missingAddons")
        self.missing_label.setWordWrap(True)
        self.missing_label.hide()

        buttons = QHBoxLayout()
        buttons.addWidget(self.add_folder_button)
        buttons.addWidget(self.refresh_button)
        embedding_buttons = QHBoxLayout()
        embedding_buttons.addWidget(self.insert_embedding)
        embedding_buttons.addWidget(self.insert_negative)
        layout = QVBoxLayout(self)
        layout.addWidget(self.folders_label)
        layout.addLayout(buttons)
        layout.addWidget(QLabel("LoRAs", self))
        layout.addWidget(self.lora_table, 3)
        layout.addWidget(QLabel("Embeddings", self))
        layout.addWidget(self.embedding_list, 2)
        layout.addLayout(embedding_buttons)
        layout.addWidget(self.missing_label)
        if not form.model_folders:
            form.model_folders = _library_folders()
        follow(form, "model_folders", lambda _folders: self.refresh())

    # ---- listing

    def refresh(self) -> None:
        folders = self._form.model_folders
        shown = ", ".join(Path(f).name or f for f in folders) or "DiffusionDesk's own"
        self.folders_label.setText(f"Model folders: {shown}")
        self._lister.list_folders(tuple(folders))

    def _show_listing(self, loras: dict, embeddings: dict, vaes: dict) -> None:
        self.lora_table.setRowCount(0)
        for name in sorted(loras, key=str.lower):
            row = self.lora_table.rowCount()
            self.lora_table.insertRow(row)
            label = QLabel(name, self.lora_table)
            label.setToolTip(str(loras[name]))
            editor = _LoraRow(name, self.lora_table)
            editor.insertRequested.connect(self.insert)
            self.lora_table.setCellWidget(row, 0, label)
            self.lora_table.setCellWidget(row, 1, editor)
        self.lora_table.resizeColumnToContents(0)
        self.embedding_list.clear()
        self.embedding_list.addItems(sorted(embeddings, key=str.lower))
        self.vae_names = sorted(vaes, key=str.lower)
        self._form.vae_choices = tuple(self.vae_names)

    def lora_rows(self) -> list[_LoraRow]:
        rows = [self.lora_table.cellWidget(r, 1) for r in range(self.lora_table.rowCount())]
        return [r for r in rows if isinstance(r, _LoraRow)]

    # ---- inserting

    def insert(self, text: str, negative: bool = False) -> None:
        """Append text to the prompt (or negative prompt), separated by a space."""
        name = "negative_prompt" if negative else "prompt"
        current = getattr(self._form, name).rstrip()
        setattr(self._form, name, f"{current} {text}" if current else text)

    def _insert_selected_embedding(self, negative: bool = False) -> None:
        item = self.embedding_list.currentItem()
        if item is not None:
            self.insert(item.text(), negative)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a models folder")
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str) -> None:
        """Add a models folder to the library's list (the one the Models dialog shows)."""
        from engine.library import LibraryError, ModelLibrary

        library = ModelLibrary()
        try:
            library.add_folder(folder)
        except LibraryError as exc:
            self._show_missing("", [str(exc)])
            return
        self._form.model_folders = tuple(str(f) for f in library.folders())

    # ---- a reused picture's add-ons

    def check_picture(self, path: Path | None) -> None:
        if path is not None and Path(path).suffix.lower() == ".png":
            self._lister.check_picture(Path(path), tuple(self._form.model_folders))

    def _show_missing(self, picture: str, sentences: list) -> None:
        if not sentences:
            self.missing_label.hide()
            return
        who = f"{picture}: " if picture else ""
        self.missing_label.setText(who + "; ".join(sentences) + ".")
        self.missing_label.show()


def add_form_rows(panel: QWidget, form: ViewModel) -> None:
    """Clip skip and VAE rows at the end of the parameter panel's form layout."""
    clip_skip = QSpinBox(panel)
    clip_skip.setObjectName("clipSkip")
    clip_skip.setRange(1, MAX_CLIP_SKIP)
    clip_skip.setToolTip(
        "Clip skip (as in AUTOMATIC1111): 1 uses the text encoder's last layer, 2 the one "
        "before (what many anime models expect)"
    )
    bind(form, "clip_skip", clip_skip)
    vae = QComboBox(panel)
    vae.setObjectName("vae")
    vae.setEditable(True)
    vae.setToolTip("A VAE from the VAE folders (or a path) instead of the model's own")

    def list_vaes(names: tuple[str, ...]) -> None:
        current = form.vae
        vae.blockSignals(True)
        vae.clear()
        vae.addItem("")
        vae.addItems(list(names))
        vae.setCurrentText(current)
        vae.blockSignals(False)

    follow(form, "vae_choices", list_vaes)
    bind(form, "vae", vae, from_widget=lambda text: text.strip())
    layout = panel.layout()
    layout.addRow("Clip skip", clip_skip)  # type: ignore[union-attr]
    layout.addRow("VAE", vae)  # type: ignore[union-attr]
