"""Entry script for the PyInstaller bundle: the same as the `diffusiondesk` command."""

from guiapp.app import main

raise SystemExit(main())
