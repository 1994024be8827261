#!/usr/bin/env python3
"""Writes the plugin modules the abuse re-run proposes, into the folder given:

- large.wasm: straight-line code with no branches, four functions of 130,000
  additions (3.6 MB). It passes the shape check, traps on the reference input, and
  costs seconds and hundreds of MiB to compile (hostile::large_bodies in the tests).
- pad-K-I.wasm (K 1..2, I 1..4): the default reward plugin with a custom section
  that brings it to just under 4 MiB, each with other padding, so eight distinct
  modules that pass the conformance check.
"""
import os
import sys


def leb(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def section(ident, content):
    return bytes([ident]) + leb(len(content)) + content


def vector(items):
    return leb(len(items)) + b"".join(items)


def large():
    i32, i64 = 0x7F, 0x7E
    types = vector([
        bytes([0x60, 0, 1, i32]),            # () -> i32
        bytes([0x60, 1, i32, 1, i32]),       # (i32) -> i32
        bytes([0x60, 2, i32, i32, 1, i64]),  # (i32, i32) -> i64
        bytes([0x60, 0, 0]),                 # () -> ()
    ])
    functions = vector([leb(0), leb(1), leb(2)] + [leb(3)] * 4)
    memory = vector([bytes([0, 1])])
    def export(name, kind, index):
        return leb(len(name)) + name + bytes([kind]) + leb(index)
    exports = vector([
        export(b"memory", 2, 0),
        export(b"blyan_abi_version", 0, 0),
        export(b"blyan_alloc", 0, 1),
        export(b"blyan_policy", 0, 2),
    ])
    add = bytes([0x20, 0, 0x42, 1, 0x7C, 0x21, 0])  # local.get 0; i64.const 1; i64.add; local.set 0
    bodies = [
        bytes([0, 0x41, 1, 0x0B]),           # i32.const 1
        bytes([0, 0x41, 0x80, 0x20, 0x0B]),  # i32.const 4096
        bytes([0, 0x00, 0x0B]),              # unreachable
    ] + [bytes([1, 1, i64]) + add * 130_000 + bytes([0x0B])] * 4
    code = vector([leb(len(body)) + body for body in bodies])
    return (b"\0asm\x01\0\0\0" + section(1, types) + section(3, functions)
            + section(5, memory) + section(7, exports) + section(10, code))


def padded(default, tag, size):
    name = b"pad"
    payload = bytes(tag) * ((size - len(default) - 16) // len(tag))
    content = leb(len(name)) + name + payload
    return default + section(0, content)


def main():
    out, reward = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "large.wasm"), "wb") as f:
        f.write(large())
    default = open(reward, "rb").read()
    for key in (1, 2):
        for index in (1, 2, 3, 4):
            with open(os.path.join(out, f"pad-{key}-{index}.wasm"), "wb") as f:
                f.write(padded(default, [key, index], (4 << 20) - 1024))


main()
