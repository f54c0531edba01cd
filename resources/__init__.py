"""The application's files (icons, dark.qss, the starter model), installed as the package
`diffusiondesk_resources` so importlib.resources finds them; see engine/resources.py."""
