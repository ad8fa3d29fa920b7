#!/usr/bin/env bash
# Installs what building, running and testing Chronus needs on Debian, idempotently:
# the ALSA (cpal) and JACK (the jack crate) development files, jackd2, liblo-tools (oscsend/oscdump),
# sox, stress-ng (to load the machine in robustness runs), the rustfmt/clippy components,
# and python-osc in a virtual environment of the project's (.venv; Debian's Python
# refuses `pip install`), for the tests that play a real OSC client. Safe to run again
# and again.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium and chromium-driver: the headless browser that tests/web.rs drives (`chronus web`).
packages=(build-essential pkg-config libasound2-dev libjack-jackd2-dev jackd2 liblo-tools sox stress-ng python3 python3-venv tmux chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    # jackd2 asks whether to enable real-time priority; answer for it.
    echo "jackd2 jackd/tweak_rt_limits boolean false" | $sudo debconf-set-selections 2>/dev/null || true
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2
    exit 1
fi
if command -v rustup >/dev/null 2>&1; then
    for component in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
    done
fi

if ! .venv/bin/python -c "import pythonosc" 2>/dev/null; then
    echo "setup: installing python-osc into .venv" >&2
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check python-osc
fi
