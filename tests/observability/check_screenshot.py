"""Fails unless a PNG screenshot shows a rendered page: decodes the PNG
with the standard library (8-bit RGB or RGBA, as Chromium writes them) and
requires dark text, the report's blue and orange bars, and many colours.

Usage: check_screenshot.py FILE.png
"""
import struct
import sys
import zlib

data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
pos, chunks = 8, []
width = height = depth = colour = None
while pos < len(data):
    (length,) = struct.unpack(">I", data[pos:pos + 4])
    kind = data[pos + 4:pos + 8]
    body = data[pos + 8:pos + 8 + length]
    if kind == b"IHDR":
        width, height, depth, colour = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT":
        chunks.append(body)
    pos += 12 + length
assert depth == 8 and colour in (2, 6), f"unexpected PNG format {depth}/{colour}"
channels = 3 if colour == 2 else 4
raw = zlib.decompress(b"".join(chunks))
stride = width * channels
rows, previous = [], bytearray(stride)
for y in range(height):
    kind = raw[y * (stride + 1)]
    line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - channels] if i >= channels else 0
        b = previous[i]
        c = previous[i - channels] if i >= channels else 0
        if kind == 1:
            line[i] = (line[i] + a) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + b) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (a + b) // 2) & 0xFF
        elif kind == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    rows.append(bytes(line))
    previous = line

pixels = [(r[i], r[i + 1], r[i + 2]) for r in rows for i in range(0, stride, channels)]
total = len(pixels)
dark = sum(1 for p in pixels if sum(p) < 200)
blue = sum(1 for r, g, b in pixels if b > 150 and r < 120)   # latency bars (#4a7fc1)
orange = sum(1 for r, g, b in pixels if r > 200 and 90 < g < 150 and b < 90)  # batches (#e8743b)
colours = len(set(pixels))
print(f"screenshot {width}x{height}: {dark} dark, {blue} blue, {orange} orange pixels, {colours} colours")
problems = []
if dark < total * 0.002:
    problems.append("almost no text")
if blue < 200:
    problems.append("no latency histogram bars")
if orange < 200:
    problems.append("no batch bars")
if colours < 20:
    problems.append("too few colours for a rendered page")
for p in problems:
    print(f"FAIL: the screenshot looks blank: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
