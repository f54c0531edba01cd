"""Entry script of the PyInstaller bundle. One executable serves both commands:
`diffusiondesk` opens the window, and the `diffusiondesk-cli` script beside it (which
packaging/build.py adds) starts it with DIFFUSIONDESK_RUN=cli to run the command line,
so the bundle carries torch once."""

import os

if os.environ.pop("DIFFUSIONDESK_RUN", "") == "cli":
    from engine.cli import main
else:
    from guiapp.app import main

raise SystemExit(main())
