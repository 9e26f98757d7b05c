"""Write the bad-input corpus of ``tests/test_bad_inputs.py`` into a folder, to try by hand (e.g. in the GUI).

Usage::

    python scripts/make_bad_inputs.py OUT_DIR [--data-mirror ../shared/data]

Writes ``calibration/<case>.yaml`` (billion laughs, non-UTF-8, deep nesting, bad types and ranges, origin
above the horizon, ...), ``video/`` (implausible frames, one frame, zeroed data chunks (``zeroed.mp4``), junk, empty, header
only) and ``image/`` (truncated JPEGs with and without an end marker). Nothing here is checked in.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import test_bad_inputs as corpus  # noqa: E402  (the generators live with the tests that run them)
from test_video import zeroed_chunks_copy  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the corpus into (created)")
    parser.add_argument("--data-mirror", type=Path, default=Path(os.environ.get("AEB_APP_DATA_MIRROR",
                                                                                 REPO.parent / "shared" / "data")))
    args = parser.parse_args(argv)
    video = args.data_mirror / "videos" / "udacity" / "solidWhiteRight.mp4"
    still = args.data_mirror / "videos" / "udacity" / "test_images" / "solidWhiteCurve.jpg"
    if not video.is_file() or not still.is_file():
        parser.error(f"{args.data_mirror}: not a data mirror (no {video.name} / {still.name})")
    for sub in ("calibration", "video", "image"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    for name, (data, _) in corpus.calibration_corpus().items():
        (args.out / "calibration" / f"{name}.yaml").write_bytes(data)
    frames = corpus.sample_frames(video, 30)
    corpus.implausible_video(frames, args.out / "video" / "implausible_frames.avi")
    corpus.write_avi(args.out / "video" / "one_frame.avi", frames[:1])
    zeroed_chunks_copy(video, args.out / "video")
    (args.out / "video" / "junk.mp4").write_bytes(os.urandom(50_000))
    (args.out / "video" / "empty.mp4").write_bytes(b"")
    (args.out / "video" / "header_only.mp4").write_bytes(video.read_bytes()[:3000])
    corpus.truncated_jpeg(still, args.out / "image" / "truncated_with_eoi.jpg", end_marker=True)
    corpus.truncated_jpeg(still, args.out / "image" / "truncated.jpg", end_marker=False)
    count = sum(1 for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {count} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
