# Sourced by scripts/demo and scripts/test: make sure the system prerequisites are
# present. As root on Debian/Ubuntu it installs what is missing; otherwise it prints
# the exact command to run and stops.

need_pkgs=()
if ! { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libpcap; } \
   && ! [ -e /usr/include/pcap/pcap.h ]; then
  need_pkgs+=(libpcap-dev)
fi
if ! command -v pkg-config >/dev/null 2>&1; then
  need_pkgs+=(pkg-config)
fi
if ! command -v cc >/dev/null 2>&1; then
  need_pkgs+=(gcc)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need_pkgs[*]} ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq "${need_pkgs[@]}" >/dev/null || {
      echo "error: could not install ${need_pkgs[*]}; run: apt-get install -y ${need_pkgs[*]}" >&2
      exit 1
    }
  else
    echo "error: missing system packages: ${need_pkgs[*]}" >&2
    echo "run: sudo apt-get install -y ${need_pkgs[*]}" >&2
    exit 1
  fi
fi
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "error: no Rust toolchain; install one with rustup (https://rustup.rs), then rerun" >&2
    exit 1
  fi
fi
