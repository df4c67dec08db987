"""Benchmark: rendering the wallet card PNG vs the floor of `qrcode` making the same QR PNG alone.

    .venv/bin/python -m bench.card_image [--runs 50] [--renders 1000]

Both run in this process on the same links: the floor is `qrcode` (same error correction, same
pixels per module, 4-module border) writing its PNG; the card is `services.card_image.render_png`
(gradient body, texts in the shipped DejaVu fonts, the QR, PNG encoding; every other card has a
60-character Cyrillic store name, wrapped onto two lines). Reported: the median of each, the
ratio, and the memory of `--renders` renders of different cards: tracemalloc (current and peak)
and RSS after the first 100 renders and at the end, which must stay flat (no leak, bounded
caches).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import tracemalloc
from pathlib import Path

import qrcode
from qrcode.constants import ERROR_CORRECT_M

from services import qr_payload
from services.card_image import QR_SIDE, QUIET_ZONE, CardArt, qr_matrix, render_png

SECRET = "bench-secret-key-0123456789abcdef"
BOT = "loyalty_shop_bot"
LONG_NAME = "Магазин хозяйственных товаров «Ёлочка» на Пушкинской площади"


def _rss_mb() -> float:
    """Current resident set size (Linux /proc), not the peak."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 1024**2


def _art(i: int) -> CardArt:
    number = str(100_000 + i)
    link = qr_payload.deep_link(BOT, qr_payload.sign(SECRET, number))
    pct = (5, 7, 10, 12)[i % 4]
    # Every other card has a long Cyrillic store name: it wraps onto two lines with an ellipsis.
    name = "Our Store" if i % 2 else LONG_NAME
    return CardArt(name, number, pct, "Business" if i % 3 == 0 else "", link, "discount")


def _floor_png(link: str, box_size: int) -> bytes:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box_size, border=QUIET_ZONE)
    code.add_data(link)
    code.make(fit=True)
    buffer = io.BytesIO()
    code.make_image().save(buffer)
    return buffer.getvalue()


def _median_ms(func, runs: int) -> float:
    samples = []
    for i in range(runs):
        start = time.perf_counter()
        func(i)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--renders", type=int, default=1000)
    args = parser.parse_args()

    modules = len(qr_matrix(_art(0).link)) + 2 * QUIET_ZONE
    box = max(4, QR_SIDE // modules)  # what render() uses for the QR on the card
    render_png(_art(0))  # warm up: fonts and backgrounds load once
    _floor_png(_art(0).link, box)

    floor = _median_ms(lambda i: _floor_png(_art(i).link, box), args.runs)
    card = _median_ms(lambda i: render_png(_art(i)), args.runs)
    print(f"qrcode PNG alone (floor): median {floor:.1f} ms ({modules} modules x {box} px)")
    print(f"card image PNG:           median {card:.1f} ms (1200x757)")
    print(f"ratio card / floor:       {card / floor:.2f}x")

    tracemalloc.start()
    rss_start = _rss_mb()
    checkpoints = {}
    for i in range(args.renders):
        render_png(_art(i))
        if i + 1 in (100, args.renders):
            current, peak = tracemalloc.get_traced_memory()
            checkpoints[i + 1] = (current / 1024**2, peak / 1024**2, _rss_mb())
    tracemalloc.stop()
    print(f"memory over {args.renders} renders (RSS before: {rss_start:.1f} MB):")
    for count, (current, peak, rss) in checkpoints.items():
        print(
            f"  after {count:>5}: tracemalloc current {current:.2f} MB, "
            f"peak {peak:.2f} MB, RSS {rss:.1f} MB"
        )


if __name__ == "__main__":
    main()
