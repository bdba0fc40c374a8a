#!/usr/bin/env bash
# Writes the fuzz targets' seed corpora under fuzz/corpus/<target>/ from the captures
# in ../shared/pcaps and pcaps/, the rules/*.toml files and docs/catalog-format.md.
# Usage: fuzz/seed-corpus.sh [--out DIR] [CAPTURE_DIR...]   (see seed_corpus.py)
# Needs python3, tshark and editcap (Debian: apt-get install tshark).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in python3 tshark editcap; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "seed-corpus: $tool is missing (Debian: apt-get install -y tshark python3)" >&2
    exit 1
  }
done
exec python3 fuzz/seed_corpus.py "$@"
