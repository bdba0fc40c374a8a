# shellcheck shell=bash
# Sourced by scripts/fuzz-build and scripts/fuzz-run (from the project root): makes
# sure cargo-fuzz and a C++ compiler are there and sets up the build on a stable
# toolchain.

if ! command -v c++ >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "fuzz: installing g++ (libFuzzer is C++) ..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
  else
    echo "fuzz: a C++ compiler is needed for libFuzzer: apt-get install -y g++" >&2
    exit 1
  fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz from crates.io ..." >&2
  cargo install --locked cargo-fuzz --version '^0.13' >&2
fi
# cargo-fuzz passes -Z flags; a stable rustc accepts them with RUSTC_BOOTSTRAP=1.
if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi
# What `cargo fuzz run` sets, for scripts/fuzz-run that runs the binaries directly.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"
FUZZ_BIN="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"

fuzz_targets() {
  cargo fuzz list
}

fuzz_known_target() {
  local all
  all=$(fuzz_targets)  # whole list first: grep -q would close the pipe early
  grep -qx -- "$1" <<<"$all"
}
