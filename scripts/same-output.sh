#!/usr/bin/env bash
# Proves that a change changes no output: builds <rev> and HEAD (each in its own git
# worktree, release profile, this machine) and compares, bit for bit:
#   - renders of scripts/same-output/corpus: every module type with non-default
#     parameters, a gate, a parameter change and ramps, moved through a snapshot -> restore
#     into a fresh engine in the middle of the render (the harness in
#     scripts/same-output/harness); every render must be non-silent;
#   - every file in patches/ and the default patch, through the harness and `chronus render`;
#   - `chronus render --replay` of a served command log with a live patch edit;
# and, byte for byte: `chronus send --list`, `chronus modules`, `chronus send` local
# refusals, and the /fail texts printed by the bad-input end-to-end test.
# Not stored hashes: both sides are built and run here (see DESIGN.md on golden files).
#
# Usage: scripts/same-output.sh <rev>      (e.g. a623a3f)
# Work trees and builds are kept for fast reruns in target/same-output of the main checkout
# (SAME_OUTPUT_DIR): the tree of <rev> is shared by every worktree of the repository, the
# tree of HEAD is one per checkout.
set -euo pipefail
rev=${1:?usage: scripts/same-output.sh <rev>}
root=$(git rev-parse --show-toplevel)
here="$root/scripts/same-output"
common=$(cd "$(git -C "$root" rev-parse --path-format=absolute --git-common-dir)/.." && pwd)
cache=${SAME_OUTPUT_DIR:-$common/target/same-output}
mkdir -p "$cache"
old_sha=$(git -C "$root" rev-parse --verify "$rev^{commit}")
new_sha=$(git -C "$root" rev-parse --verify HEAD)
[ -z "$(git -C "$root" status --porcelain --untracked-files=no)" ] ||
    echo "same-output: note: uncommitted changes are not compared (HEAD is $new_sha)" >&2

# prepare NAME SHA: a worktree at SHA with the harness added as a workspace member, built.
prepare() {
    local dir="$cache/tree-$1" sha=$2
    if [ -e "$dir/.git" ]; then
        git -C "$dir" checkout -q --detach -f "$sha"
    else
        rm -rf "$dir"
        git -C "$root" worktree add -q --detach -f "$dir" "$sha"
    fi
    rm -rf "$dir/crates/same-output-harness"
    cp -r "$here/harness" "$dir/crates/same-output-harness"
    echo "same-output: building $1 ($sha) in $dir" >&2
    (cd "$dir" && cargo build --release --quiet -p chronus -p same-output-harness)
    (cd "$dir" && cargo test --release --quiet -p chronus --test bad_input --no-run)
}

# outputs NAME OUT: runs every case with the binaries of the tree NAME into the folder OUT.
outputs() {
    local dir="$cache/tree-$1" out=$2
    local harness="$dir/target/release/same-output-harness" chronus="$dir/target/release/chronus"
    rm -rf "$out" && mkdir -p "$out"
    local case rms
    for patch in "$here"/corpus/modules/*.toml; do
        case=$(basename "$patch" .toml)
        rms=$("$harness" "$patch" "${patch%.toml}.txt" 1.5 0.7 "$out/module-$case.f32")
        echo "module-$case $rms" >>"$out/rms"
    done
    for patch in default "$root"/patches/*.toml; do
        case=$(basename "$patch" .toml)
        rms=$("$harness" "$patch" "$here/corpus/patches/$case.txt" 1.5 0.7 "$out/patch-$case.f32")
        echo "patch-$case $rms" >>"$out/rms"
        local args=()
        [ "$patch" = default ] || args=(--patch "$patch")
        "$chronus" render "${args[@]}" --commands "$here/corpus/patches/$case.txt" \
            --seconds 1.5 -o "$out/render-$case.wav" 2>/dev/null
    done
    "$chronus" render --replay "$here/corpus/live-edit.log" --seconds 3 \
        -o "$out/replay-live-edit.wav" 2>/dev/null
    "$chronus" send --list >"$out/send-list.txt"
    "$chronus" modules >"$out/modules.txt"
    for refused in "/mod/sine/freq 30000" "/gate/adsr 2" "/mod/adsr/sustain 1.5" \
        "/mod/sine/freq abc" "/ramp /mod/sine/freq 30000 1" "/sync x"; do
        # shellcheck disable=SC2086 # the words are the message
        "$chronus" send --osc 127.0.0.1:9 $refused >>"$out/send-refusals.txt" 2>&1 || true
    done
    # One test, so no other test's progress dot lands inside its lines.
    (cd "$dir" && cargo test --release --quiet -p chronus --test bad_input -- --nocapture \
        --exact bad_messages_are_refused_and_the_sound_plays_on 2>&1) |
        grep -- '-> /fail' | sed 's/^\.*//' >"$out/fail-texts.txt"
}

new="new-$(printf '%s' "$root" | cksum | cut -d' ' -f1)"
(flock 9 && prepare "old-$old_sha" "$old_sha") 9>"$cache/old-$old_sha.lock"
prepare "$new" "$new_sha"
old_out="$cache/out-old-$$" new_out="$cache/out-new-$$"
trap 'rm -rf "$old_out" "$new_out"' EXIT
outputs "old-$old_sha" "$old_out"
outputs "$new" "$new_out"

status=0
while read -r case rms; do
    if awk -v r="$rms" 'BEGIN { exit !(r < 1e-4) }'; then
        echo "same-output: SILENT: $case (rms $rms)" >&2
        status=1
    fi
done <"$new_out/rms"
compared=0
for file in "$old_out"/*; do
    name=$(basename "$file")
    compared=$((compared + 1))
    if ! cmp -s "$file" "$new_out/$name"; then
        echo "same-output: DIFFERS: $name" >&2
        case "$name" in *.txt) diff "$file" "$new_out/$name" | head -20 >&2 ;; esac
        status=1
    fi
done
if [ "$status" -eq 0 ]; then
    echo "same-output: $compared outputs of $old_sha and $new_sha are identical ($(wc -l <"$new_out/rms") renders, none silent, $(wc -l <"$new_out/fail-texts.txt") /fail texts)"
fi
exit "$status"
