#!/bin/sh
# Take out what install.sh added (the .desktop entry, icon, AppStream metadata and the
# ~/.local/bin commands, the last only where they point into this folder). Your
# pictures, settings and models stay; delete this folder to remove the program itself.
set -eu

here=$(cd "$(dirname "$0")" && pwd -P)
app_id=io.github.diffusiondesk.DiffusionDesk
data=${XDG_DATA_HOME:-$HOME/.local/share}
bin=$HOME/.local/bin

rm -f "$data/applications/$app_id.desktop" \
      "$data/icons/hicolor/scalable/apps/$app_id.svg" \
      "$data/metainfo/$app_id.metainfo.xml"
for command in diffusiondesk diffusiondesk-cli; do
    if [ -L "$bin/$command" ] && [ "$(readlink "$bin/$command")" = "$here/$command" ]; then
        rm -f "$bin/$command"
    fi
done

command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$data/applications" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$data/icons/hicolor" || true

echo "DiffusionDesk is out of your applications menu; delete $here to remove the program."
