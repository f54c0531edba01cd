"""Which packages the wheel and sdist carry. Everything else is in pyproject.toml.

Only here because pyproject.toml cannot combine package discovery with a renamed
package: resources/ ships as `diffusiondesk_resources` (see engine/resources.py) so the
starter model's weights stay where they are in the repository. Data folders such as
engine/model_configs/ are found as namespace packages, so their files ship as package
data (the "*" patterns in pyproject.toml).
"""

from setuptools import find_namespace_packages, setup

OURS = ["engine", "engine.*", "guiapp", "guiapp.*", "server", "server.*", "starter", "starter.*"]

setup(
    packages=[
        *find_namespace_packages(include=OURS, exclude=["*.__pycache__"]),
        "diffusiondesk_resources",
        "diffusiondesk_resources.icons",
    ],
    package_dir={"diffusiondesk_resources": "resources"},
)
