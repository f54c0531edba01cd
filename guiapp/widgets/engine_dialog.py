"""Engine → "Engine location…": run on this computer or on a diffusiondesk-server.

The dialog only edits an EngineLocation. A location it cannot use (a malformed address)
is named inline and the dialog stays open; a server that cannot be reached or refuses
the token is reported by the switched-to engine in the window's error strip, where it
keeps reconnecting, so the dialog never waits on the network.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from engine.remote import TOKEN_ENV
from guiapp.engine_location import EngineLocation

ERROR_STYLE = "color: #ff8080;"


class EngineDialog(QDialog):
    """Choose "This computer" or "A server" (address and access token)."""

    def __init__(
        self,
        current: EngineLocation,
        settings_file: str,
        chosen: Callable[[EngineLocation], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("engineDialog")
        self.setWindowTitle("Engine location")
        self._chosen = chosen
        self.local_button = QRadioButton("This computer", self)
        self.local_button.setObjectName("engineLocal")
        self.server_button = QRadioButton("A server (diffusiondesk-server, or a Ray cluster)", self)
        self.server_button.setObjectName("engineServer")
        group = QButtonGroup(self)
        group.addButton(self.local_button)
        group.addButton(self.server_button)
        self.url_edit = QLineEdit(current.server, self)
        self.url_edit.setObjectName("engineUrl")
        self.url_edit.setPlaceholderText("http://gpu-box:7860 or https://… behind a proxy")
        self.token_edit = QLineEdit(current.token, self)
        self.token_edit.setObjectName("engineToken")
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText(f"empty: ${TOKEN_ENV}, or none on loopback")
        note = QLabel(
            f"The token is stored in plain text in {settings_file} (readable by your user "
            f"account only); leave it empty to use the {TOKEN_ENV} environment variable. "
            "Jobs still queued or running on the current engine are stopped when you switch; "
            "the history stays.",
            self,
        )
        note.setWordWrap(True)
        note.setObjectName("engineNote")
        self.error_label = QLabel(self)
        self.error_label.setObjectName("engineError")
        self.error_label.setStyleSheet(ERROR_STYLE)
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        form = QFormLayout()
        form.addRow("Address", self.url_edit)
        form.addRow("Access token", self.token_edit)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.buttons.accepted.connect(self.apply)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.local_button)
        layout.addWidget(self.server_button)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        (self.local_button if current.local else self.server_button).setChecked(True)
        self.server_button.toggled.connect(self._enable_fields)
        self._enable_fields(not current.local)

    def _enable_fields(self, server: bool) -> None:
        self.url_edit.setEnabled(server)
        self.token_edit.setEnabled(server)

    def location(self) -> EngineLocation:
        if self.local_button.isChecked():
            return EngineLocation()
        return EngineLocation(self.url_edit.text().strip(), self.token_edit.text().strip())

    def apply(self) -> None:
        """OK: keep the dialog open with one sentence if the location cannot be used."""
        location = self.location()
        problem = location.problem()
        if self.server_button.isChecked() and location.local:
            problem = "Enter the server's address, for example http://gpu-box:7860."
        if problem:
            self.error_label.setText(problem)
            self.error_label.show()
            return
        self.error_label.hide()
        self.accept()
        self._chosen(location)


def show_engine_dialog(
    parent: QWidget,
    current: EngineLocation,
    settings_file: str,
    chosen: Callable[[EngineLocation], None],
) -> EngineDialog:
    """Open the dialog without blocking (window-modal); `chosen(location)` on OK."""
    dialog = EngineDialog(current, settings_file, chosen, parent)
    dialog.setModal(True)
    dialog.show()
    return dialog
