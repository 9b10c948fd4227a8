#!/usr/bin/env python3
"""Writes small hand-built `.gopclntab` seeds for the `pclntab` fuzz target into DIR:
one table of 3 functions (with file and line pc-value tables) in each format the parser
knows: Go 1.16 (0xfffffffa), 1.18 (0xfffffff0), 1.20+ (0xfffffff1), and 1.20+ with a header
text start of 0 as Go 1.26+ writes it. Each file is the target's input: an 8-byte
little-endian text start, then the table. Usage: gen_small_pclntab.py DIR
"""
import struct, sys

def uvarint(v):
    out = bytearray()
    while True:
        b = v & 0x7f
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)

def zigzag(d):
    return (d << 1) if d >= 0 else ((-d - 1) << 1) | 1

def pcvalue(steps):
    # steps: list of (value, pc_delta_in_quanta); starts from value -1
    out, prev = bytearray(), -1
    for v, pcd in steps:
        out += uvarint(zigzag(v - prev)) + uvarint(pcd)
        prev = v
    return bytes(out + b"\0")

def table(fmt, text_start_in_header, funcs, files):
    """fmt: 116, 118 or 120. funcs: (name, entry_off, size, file_steps, line_steps)."""
    ptr = 8
    magic = {116: 0xfffffffa, 118: 0xfffffff0, 120: 0xfffffff1}[fmt]
    nwords = 7 if fmt == 116 else 8
    hdr_len = 8 + nwords * ptr
    funcname = b"".join(f[0].encode() + b"\0" for f in funcs)
    name_offs, o = [], 0
    for f in funcs:
        name_offs.append(o); o += len(f[0]) + 1
    filetab, file_offs = b"", []
    for fn in files:
        file_offs.append(len(filetab)); filetab += fn.encode() + b"\0"
    cutab = b"".join(struct.pack("<I", x) for x in file_offs)
    pctab = bytearray(b"\0")
    tabs = []
    for f in funcs:
        pf = len(pctab); pctab += pcvalue(f[3])
        pl = len(pctab); pctab += pcvalue(f[4])
        tabs.append((pf, pl))
    funcname_off = hdr_len
    cutab_off = funcname_off + len(funcname)
    filetab_off = cutab_off + len(cutab)
    pctab_off = filetab_off + len(filetab)
    functab_off = pctab_off + len(pctab)
    functab_off += (-functab_off) % 8
    n = len(funcs)
    ent = 2 * ptr if fmt == 116 else 8
    recs_start = (n + 1) * ent
    recs, funcoffs = bytearray(), []
    for (name, eoff, size, _, _), no, (pf, pl) in zip(funcs, name_offs, tabs):
        funcoffs.append(recs_start + len(recs))
        head = struct.pack("<Q", text_start_in_header + eoff) if fmt == 116 else struct.pack("<I", eoff)
        recs += head + struct.pack("<iiIIIIII", no, 0, 0, 0, pf, pl, 0, 0) + b"\0" * 8
    functab = bytearray()
    end = funcs[-1][1] + funcs[-1][2]
    for i, f in enumerate(funcs):
        if fmt == 116:
            functab += struct.pack("<QQ", text_start_in_header + f[1], funcoffs[i])
        else:
            functab += struct.pack("<II", f[1], funcoffs[i])
    functab += struct.pack("<QQ", text_start_in_header + end, 0) if fmt == 116 else struct.pack("<II", end, 0)
    words = [n, len(files)]
    if fmt != 116:
        words.append(text_start_in_header)
    words += [funcname_off, cutab_off, filetab_off, pctab_off, functab_off]
    hdr = struct.pack("<IBBBB", magic, 0, 0, 1, ptr) + b"".join(struct.pack("<Q", w) for w in words)
    body = hdr + funcname + cutab + filetab + bytes(pctab)
    body += b"\0" * (functab_off - len(body))
    return body + bytes(functab) + bytes(recs)

funcs = [
    ("main.main", 0x0, 0x40, [(0, 0x40)], [(10, 0x10), (11, 0x30)]),
    ("runtime.mapassign", 0x40, 0xc0, [(1, 0xc0)], [(600, 0x20), (610, 0x40), (605, 0x60)]),
    ("main.f", 0x100, 0x80, [(0, 0x40), (1, 0x40)], [(20, 0x80)]),
]
files = ["/src/main.go", "/go/src/runtime/map.go"]
out = sys.argv[1]
TEXT = 0x401000
for fmt, hdr_ts in ((116, TEXT), (118, TEXT), (120, TEXT), (120, 0)):
    name = f"{out}/small-go{fmt}{'-textstart0' if hdr_ts == 0 else ''}.pclntab"
    open(name, "wb").write(struct.pack("<Q", TEXT) + table(fmt, hdr_ts, funcs, files))
