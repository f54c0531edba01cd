"""Settings for the whole test run, applied before torch or Qt is imported."""

import atexit
import os
import shutil
import tempfile

# Tests use tiny models: one torch thread is faster than two spinning OpenMP threads,
# and far faster on a loaded machine. Benchmarks (bench/) are not affected.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# "auto" would convert every test model to OpenVINO and time it; the OpenVINO tests
# choose that backend themselves.
os.environ.setdefault("DIFFUSIONDESK_BACKEND", "torch")
# The model library, add-on folders and caches of a test run never touch the person's own
# data folder; tests that need a particular one set DIFFUSIONDESK_DATA themselves.
if "DIFFUSIONDESK_DATA" not in os.environ:
    _data = tempfile.mkdtemp(prefix="diffusiondesk-test-data-")
    os.environ["DIFFUSIONDESK_DATA"] = _data
    atexit.register(shutil.rmtree, _data, True)
