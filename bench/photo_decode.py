"""Benchmark: peak memory of the bot process when six 40-megapixel PNG photos arrive at once.

    .venv/bin/python -m bench.photo_decode [--photos 6]

A 40-megapixel PNG that is mostly white compresses to a few hundred kilobytes but decodes to
160 MB of pixels. Each measurement runs in a fresh process that first imports the whole bot
(`bot.app`: aiogram, SQLAlchemy, Pillow, matplotlib — what a running bot holds), records its
resident memory (the floor), then reads `--photos` such photos concurrently through
`services.qr_decode.QrReader`, and reports the peak resident memory (`ru_maxrss`) and the time.
Two readers are compared: the bot's (one decode at a time, reduced as early as the format
allows) and one that lets every photo decode at once, as the till did before.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

TARGET_MB = 600


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _photo() -> bytes:
    import qrcode
    from PIL import Image

    image = Image.new("RGBA", (8000, 5000), "white")
    code = qrcode.make("https://t.me/bench_bot?start=c100045_x").get_image()
    image.paste(code.convert("RGBA").resize((1600, 1600)), (3200, 1700))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _child(concurrency: int, photos: int, path: str) -> None:
    import bot.app  # noqa: F401  (the floor: a process with the whole bot loaded)
    from services.qr_decode import QrReader

    data = Path(path).read_bytes()
    floor = _rss_mb()
    floor_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reader = QrReader(concurrency)

    async def run() -> list[list[str]]:
        return await asyncio.gather(*(reader.read(data) for _ in range(photos)))

    started = time.perf_counter()
    results = asyncio.run(run())
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    found = sum(1 for texts in results if texts)
    print(
        json.dumps(
            {"floor": floor, "floor_peak": floor_peak, "peak": peak, "s": seconds, "found": found}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=6)
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--file", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.photos, args.file)
        return
    path = Path("bench/out/photo-40mp.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _photo()
    path.write_bytes(data)
    print(f"{args.photos} PNG photos of 8000 x 5000 px, {len(data) / 1024:.0f} KB each")
    for label, concurrency in (("bot (one at a time)", 1), ("all at once (before)", args.photos)):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.photo_decode",
                "--child",
                str(concurrency),
                "--photos",
                str(args.photos),
                "--file",
                str(path),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        verdict = "ok" if r["peak"] < TARGET_MB else "OVER"
        print(
            f"{label:22} floor {r['floor']:.0f} MB, peak {r['peak']:.0f} MB "
            f"(+{r['peak'] - r['floor']:.0f} MB; target < {TARGET_MB} MB: {verdict}), "
            f"{r['s']:.1f} s, QR found in {r['found']}/{args.photos}"
        )


if __name__ == "__main__":
    main()
