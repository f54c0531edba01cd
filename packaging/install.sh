#!/bin/sh
# Add DiffusionDesk to this user's desktop menu (XDG): the .desktop entry, the icon and
# the AppStream metadata under ${XDG_DATA_HOME:-~/.local/share}, and the commands
# diffusiondesk and diffusiondesk-cli in ~/.local/bin. The program stays in this folder;
# uninstall.sh takes it all out again.
set -eu

here=$(cd "$(dirname "$0")" && pwd -P)
app_id=io.github.diffusiondesk.DiffusionDesk
data=${XDG_DATA_HOME:-$HOME/.local/share}
apps=$data/applications
icons=$data/icons/hicolor/scalable/apps
metainfo=$data/metainfo
bin=$HOME/.local/bin

case $here in
    *[\"\`\$\\%\|\&]* | *"
"*)
        echo "This folder's path ($here) holds a character a desktop entry cannot carry" \
             "(one of \" \` \$ \\ % | & or a line break): move the folder and run install.sh again." >&2
        exit 1 ;;
esac
if [ ! -x "$here/diffusiondesk" ]; then
    echo "install.sh must stay in the DiffusionDesk folder, beside diffusiondesk ($here has none)." >&2
    exit 1
fi

mkdir -p "$apps" "$icons" "$metainfo" "$bin"
# Exec is quoted (the folder may contain spaces); TryExec takes a bare path.
sed -e "s|^Exec=diffusiondesk|Exec=\"$here/diffusiondesk\"|" \
    -e "s|^TryExec=diffusiondesk|TryExec=$here/diffusiondesk|" \
    "$here/share/$app_id.desktop" > "$apps/$app_id.desktop.part"
mv "$apps/$app_id.desktop.part" "$apps/$app_id.desktop"
cp "$here/share/$app_id.svg" "$icons/$app_id.svg"
cp "$here/share/$app_id.metainfo.xml" "$metainfo/$app_id.metainfo.xml"
ln -sfn "$here/diffusiondesk" "$bin/diffusiondesk"
ln -sfn "$here/diffusiondesk-cli" "$bin/diffusiondesk-cli"

# Menus pick the entry up by themselves; refreshing the caches makes it immediate.
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$apps" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$data/icons/hicolor" || true

echo "DiffusionDesk is in your applications menu; in a terminal: diffusiondesk, diffusiondesk-cli"
case ":${PATH:-}:" in
    *":$bin:"*) ;;
    *) echo "(add $bin to PATH for the terminal commands)" ;;
esac
