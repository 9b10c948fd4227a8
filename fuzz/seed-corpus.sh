#!/usr/bin/env bash
# Builds a tiny Go program with each Go toolchain found and seeds fuzz/corpus/<target>/ with:
#   types/      the whole (stripped, -s -w) binaries
#   pclntab/    8-byte little-endian .text address + the .gopclntab section, and the small
#               hand-built tables of gen_small_pclntab.py (also alone in pclntab-small/)
#   buildinfo/  the .go.buildinfo section, plus a hand-made pointer-format (Go <=1.17) section
# The corpus is git-ignored: re-run this on a fresh checkout. Needs objcopy (binutils), python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$here"/corpus/{buildinfo,pclntab,pclntab-small,types}

cat >"$work/main.go" <<'GO'
package main

import "fmt"

type key struct {
	a int32
	b string
}

func main() {
	m := map[string]int{}
	s := map[key]uint64{}
	for i := 0; i < 20; i++ {
		m[fmt.Sprint("k", i)] = i
		s[key{int32(i), "x"}] = uint64(i)
	}
	delete(m, "k1")
	fmt.Println(len(m), len(s))
}
GO

gos=()
for g in "$root"/.cache/go/1.26.6/bin/go /usr/lib/go-1.19/bin/go; do
	[ -x "$g" ] && gos+=("$g")
done
[ ${#gos[@]} -gt 0 ] || { echo "no Go toolchain found" >&2; exit 1; }

for g in "${gos[@]}"; do
	v=$(GOTOOLCHAIN=local "$g" env GOVERSION)
	out="$work/hello-$v"
	(cd "$work" && GO111MODULE=off GOTOOLCHAIN=local GOCACHE=/tmp/fuzzgocache \
		"$g" build -ldflags='-s -w' -o "$out" main.go)
	cp "$out" "$here/corpus/types/hello-$v"
	objcopy -O binary --only-section=.go.buildinfo "$out" "$here/corpus/buildinfo/hello-$v.buildinfo"
	objcopy -O binary --only-section=.gopclntab "$out" "$work/pcln"
	text=$(readelf -SW "$out" | awk '{ for (i = 1; i < NF; i++) if ($i == ".text") print $(i + 2) }')
	python3 - "$text" "$work/pcln" "$here/corpus/pclntab/hello-$v.pclntab" <<'PY'
import struct, sys
text, src, dst = int(sys.argv[1], 16), sys.argv[2], sys.argv[3]
open(dst, "wb").write(struct.pack("<Q", text) + open(src, "rb").read())
PY
	echo "seeded from $v"
done

# Small hand-built tables in every pclntab format (Go 1.16, 1.18, 1.20+, 1.26+ text start 0):
# pclntab-small/ is the corpus for short runs with -max_len=4096 (fast, many executions).
mkdir -p "$here/corpus/pclntab-small"
python3 "$here/gen_small_pclntab.py" "$here/corpus/pclntab-small"
cp "$here"/corpus/pclntab-small/* "$here/corpus/pclntab/"

# Pointer-format build info (Go 1.13-1.17): string headers and strings placed inside the
# section itself, where the buildinfo target's resolver reads them (addresses = offsets).
python3 - "$here/corpus/buildinfo/pointer-format.buildinfo" <<'PY'
import struct, sys
ver = b"go1.16.15"
mod = b"0123456789abcdefpath\texample.com/x\nmod\texample.com/x\t(devel)\t\nbuild\t-buildmode=exe\n0123456789abcdef"
d = b"\xff Go buildinf:" + bytes([8, 0]) + struct.pack("<QQ", 32, 48)
d += struct.pack("<QQ", 64, len(ver)) + struct.pack("<QQ", 64 + len(ver), len(mod))
d += ver + mod
open(sys.argv[1], "wb").write(d)
PY
ls -l "$here"/corpus/*
