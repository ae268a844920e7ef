"""Find CUDA fatbins in a file (or bytes) and list the architectures of their SASS (ELF) and PTX entries.

No CUDA tools needed (``cuobjdump`` may be absent). Layout (as written by nvcc/fatbinary): a 16-byte header
(magic 0xBA55ED50, version u16, header size u16, payload size u64) followed by entries with a 64-byte header
(kind u16: 1 PTX, 2 ELF; ...; header size u32 at 4; payload size u64 at 8; flags u64 at 40; SM number u32 at 28).
PTX entries that are not compressed also carry their ``.target sm_XX`` line, which is reported when found.
"""

from __future__ import annotations

import re
import struct

MAGIC = b"\x50\xed\x55\xba"
KINDS = {1: "ptx", 2: "sass"}


def _entries(blob: bytes, start: int):
    _, hsize, fsize = struct.unpack_from("<HHQ", blob, start + 4)
    off, end = start + hsize, start + hsize + fsize
    while off + 64 <= end and off + 64 <= len(blob):
        kind, _, ehs, size = struct.unpack_from("<HHIQ", blob, off)
        (sm,) = struct.unpack_from("<I", blob, off + 28)
        (flags,) = struct.unpack_from("<Q", blob, off + 40)
        if kind not in KINDS or ehs < 64 or size == 0:
            break
        payload = blob[off + ehs: off + ehs + size]
        arch = f"sm_{sm}"
        if kind == 1:
            m = re.search(rb"\.target\s+(sm_\d+[a-z]?)", payload[:4096])
            if m:
                arch = m.group(1).decode()
        yield dict(kind=KINDS[kind], arch=arch, size=int(size), compressed=bool(flags & 0x2000),
                   elf=payload[:4] == b"\x7fELF")
        off += ehs + size


def scan(blob: bytes) -> list[dict]:
    """All entries of all fatbins found in ``blob``."""
    out, pos = [], blob.find(MAGIC)
    while pos >= 0:
        try:
            (ver,) = struct.unpack_from("<H", blob, pos + 4)
            if ver == 1:
                out.extend(_entries(blob, pos))
        except struct.error:
            pass
        pos = blob.find(MAGIC, pos + 4)
    return out


def ptx_targets(text: str) -> list[str]:
    return sorted(set(re.findall(r"\.target\s+(sm_\d+[a-z]?)", text)))


def elf_sm(blob: bytes) -> str | None:
    """SM of a bare cubin (ELF, e_machine 190 = EM_CUDA) from its e_flags (low byte, or bits 8..15 for the
    newer ABI)."""
    if blob[:4] != b"\x7fELF" or struct.unpack_from("<H", blob, 18)[0] != 190:
        return None
    (flags,) = struct.unpack_from("<I", blob, 48)
    sm = flags & 0xFF
    if sm < 20:  # new-style e_flags (CUDA >= 12.8): architecture in bits 8..15
        sm = (flags >> 8) & 0xFF
    return f"sm_{sm}"
