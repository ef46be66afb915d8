"""A virtual X display (Xvfb) for graphical clients such as remote-viewer, and screenshots of it.

Screenshots come from ``xwd -root`` and are read here: XWD is a 100-byte
big-endian header, the window name, the colour map, then the pixels
(ZPixmap, 24 or 32 bits per pixel at depth 24).
"""

from __future__ import annotations

import os
import struct
import subprocess
from collections import Counter
from typing import Dict, List, Optional

from . import teardown
from .processes import end_with_this_process

XWD_HEADER = struct.Struct(">25I")
XWD_COLOR = 12
ZPIXMAP = 2


class Screen:
    """A screenshot: rows of 0xRRGGBB pixels."""

    def __init__(self, rows: List[List[int]]) -> None:
        self.rows = rows

    def colours(self) -> Counter:
        counts: Counter = Counter()
        for row in self.rows:
            counts.update(row)
        return counts

    def colours_around(self, rgb: int) -> Counter:
        """The colours inside the smallest rectangle holding every pixel of colour ``rgb`` (a window, say)."""
        lines = [y for y, row in enumerate(self.rows) if rgb in row]
        if not lines:
            return Counter()
        left = min(row.index(rgb) for row in self.rows[lines[0]:lines[-1] + 1] if rgb in row)
        right = max(len(row) - row[::-1].index(rgb) for row in self.rows[lines[0]:lines[-1] + 1] if rgb in row)
        counts: Counter = Counter()
        for row in self.rows[lines[0]:lines[-1] + 1]:
            counts.update(row[left:right])
        return counts


def read_xwd(data: bytes) -> Screen:
    fields = XWD_HEADER.unpack_from(data)
    (header_size, _version, pixmap_format, depth, width, height, _xoffset, byte_order, _unit, _bit_order, _pad,
     bits_per_pixel, bytes_per_line, _visual, red_mask, green_mask, blue_mask, _bits_rgb, _entries, ncolors,
     *_rest) = fields
    if pixmap_format != ZPIXMAP or bits_per_pixel not in (24, 32) or depth != 24:
        raise ValueError(f"XWD format {pixmap_format}, depth {depth}, {bits_per_pixel} bpp: expected ZPixmap 24")
    start = header_size + ncolors * XWD_COLOR
    size = bits_per_pixel // 8
    order = "little" if byte_order == 0 else "big"
    rgb: Dict[bytes, int] = {}
    rows = []
    for y in range(height):
        line = data[start + y * bytes_per_line:start + y * bytes_per_line + width * size]
        row = []
        for i in range(0, len(line), size):
            raw = line[i:i + size]
            if raw not in rgb:
                rgb[raw] = _rgb(int.from_bytes(raw, order), red_mask, green_mask, blue_mask)
            row.append(rgb[raw])
        rows.append(row)
    return Screen(rows)


def _rgb(pixel: int, red_mask: int, green_mask: int, blue_mask: int) -> int:
    def channel(mask: int) -> int:
        shift = (mask & -mask).bit_length() - 1
        return (pixel & mask) >> shift
    return channel(red_mask) << 16 | channel(green_mask) << 8 | channel(blue_mask)


class VirtualDisplay:
    """``with VirtualDisplay() as display:`` an Xvfb server; ``display.env`` runs X clients on it."""

    def __init__(self, width: int = 1024, height: int = 768) -> None:
        self.size = f"{width}x{height}x24"
        self.process: Optional[subprocess.Popen] = None
        self.name = ""
        self._key: Optional[int] = None

    def __enter__(self) -> VirtualDisplay:
        read_end, write_end = os.pipe()
        self.process = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_end), "-screen", "0", self.size, "-nolisten", "tcp", "-noreset"],
            pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=end_with_this_process)
        os.close(write_end)
        self._key = teardown.register(self.close)
        with os.fdopen(read_end) as announced:
            number = announced.readline().strip()
        if not number.isdigit():
            self.close()
            raise RuntimeError("Xvfb did not announce its display")
        self.name = f":{number}"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def env(self) -> Dict[str, str]:
        return {**os.environ, "DISPLAY": self.name, "GDK_BACKEND": "x11", "NO_AT_BRIDGE": "1"}

    def screenshot(self) -> Screen:
        data = subprocess.run(["xwd", "-root", "-silent"], env=self.env, capture_output=True, check=True,
                              timeout=30).stdout
        return read_xwd(data)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._key is not None:
            teardown.unregister(self._key)
            self._key = None
