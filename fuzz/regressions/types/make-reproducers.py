#!/usr/bin/env python3
"""Derives the `types` reproducers from the seed binaries (too large to commit: 1.2-1.6 MB).

Usage: fuzz/regressions/types/make-reproducers.py [CORPUS_DIR [OUT_DIR]]
Defaults: fuzz/corpus/types (run fuzz/seed-corpus.sh first) and /tmp/types-reproducers.
Then, from fuzz/:  RUSTC_BOOTSTRAP=1 cargo fuzz run types /tmp/types-reproducers/<file>

- memsz-overflow-*: the executable PT_LOAD's p_memsz set to 0xffffffffffffff00.
  Panics (overflow checks on) at src/gobin/moduledata.rs:71 `text < s.vaddr + s.memsz`
  ("attempt to add with overflow"), inside GoBinary::parse.
- block-size-overflow-*: the file unchanged plus 8 trailing bytes 0xfffffffffffffff0, which the
  harness passes as a type address to TypeReader::map_block_size. Panics at
  src/gobin/types.rs `self.word(addr + 64)` (Swiss, Go 1.26) / `self.bytes(addr + 82, 2)`
  (classic, Go 1.19): "attempt to add with overflow".
"""
import os
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))
corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "corpus", "types")
out = sys.argv[2] if len(sys.argv) > 2 else "/tmp/types-reproducers"
os.makedirs(out, exist_ok=True)

for name in sorted(os.listdir(corpus)):
    if not name.startswith("hello-go"):
        continue
    data = open(os.path.join(corpus, name), "rb").read()
    open(os.path.join(out, f"block-size-overflow-{name}"), "wb").write(
        data + struct.pack("<Q", 0xFFFF_FFFF_FFFF_FFF0)
    )
    d = bytearray(data)
    phoff = struct.unpack_from("<Q", d, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", d, 0x36)
    for i in range(phnum):
        o = phoff + i * phentsize
        p_type, p_flags = struct.unpack_from("<II", d, o)
        if p_type == 1 and p_flags & 1:  # PT_LOAD, PF_X
            struct.pack_into("<Q", d, o + 40, 0xFFFF_FFFF_FFFF_FF00)  # p_memsz
            break
    open(os.path.join(out, f"memsz-overflow-{name}"), "wb").write(bytes(d))
    print("wrote reproducers from", name, "to", out)
