#!/usr/bin/env bash
# Regenerate the pictures of docs/how-it-works.md from the shipped sample (sample_index/images, Kodak suite):
#   bash docs/pictures.sh
# Needs cbir installed (pip install -e .) and, for the screenshot of the results page, chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/img
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cbir quantize sample_index/images/kodim23.jpg --sweep 5,8,25,35,45 -o "$out/sweep.png" >/dev/null
repo=$(pwd)
cd "$work"  # so the page names the database sample.db, not a temporary path
cbir index "$repo/sample_index/images" --db sample.db --quiet >/dev/null
cbir info --db sample.db --palette "$repo/$out/codebook.png" >/dev/null
cbir query "$repo/sample_index/images/kodim23.jpg" --db sample.db -n 8 --html results.html --quiet >/dev/null
cbir query --color "#1e90ff:40" --color white:20 --db sample.db -n 5 --montage "$repo/$out/colour-query.png" \
    --quiet >/dev/null
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$work/profile" --hide-scrollbars \
    --window-size=1000,760 --screenshot="$repo/$out/results.png" "file://$work/results.html" 2>/dev/null
ls -l "$repo/$out"
