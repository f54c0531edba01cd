"""ControlNet and T2I-adapter units: control-image preprocessors (no torch), request
checks (no torch), and the models and pipelines that run the units (units.py, torch)."""
