#!/usr/bin/env bash
# Installs the Debian packages the suite needs, skipping those already present:
# chromium + chromium-driver (the rater-page browser tests), r-cran-lme4 and r-cran-lmertest (the mixed-model
# cross-check against lme4 and its Satterthwaite df), wamerican (the DAT word list), wordnet-base (WordNet 3.0
# database files: the real conceptual graph of the combinatorial-creativity task), and npm
# (installs axe-core for the accessibility checks of the browser tests, see package.json).
set -euo pipefail
packages=(chromium chromium-driver r-cran-lme4 r-cran-lmertest wamerican wordnet-base)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# npm is asked for by command, not by package: a Node.js from elsewhere (e.g. NodeSource's
# nodejs, which bundles npm) conflicts with Debian's npm package, and already has what we need.
command -v npm >/dev/null || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "error: missing Debian packages (${missing[*]}) and no apt-get to install them" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
