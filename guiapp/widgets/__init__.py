"""The window's widgets. Each one shows state from guiapp's models (state, jobs,
document, history) and turns a person's input into calls on them; none holds a job,
a picture or a parameter of its own. A new panel or dock goes in a module here and is
placed by guiapp/window.py."""
