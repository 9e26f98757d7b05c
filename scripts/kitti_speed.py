"""A KITTI raw drive's ego speed as the ``--ego-speed`` CSV of ``aeb-app run`` (``time_s,speed_mps``).

KITTI raw ships the OXTS GPS/IMU stream beside the cameras: ``DRIVE/oxts/timestamps.txt`` and one
``DRIVE/oxts/data/NNNNNNNNNN.txt`` per packet, whose 9th value (``vf``) is the forward velocity in m/s. The CSV's
clock is the camera's: ``time_s`` counts from the first line of ``DRIVE/<camera>/timestamps.txt``, as
``aeb-app run DRIVE/<camera>`` times its frames. A small negative ``vf`` of a standing car (sensor noise, down to
``-MAX_STANDING_NOISE_MPS``) is written as 0; a larger one (reversing) stops with the file named.

    python scripts/kitti_speed.py 2011_09_26/2011_09_26_drive_0001_sync --out speed.csv
    aeb-app run 2011_09_26/2011_09_26_drive_0001_sync/image_02 --calibration kitti.yaml --ego-speed speed.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aeb_app.atomic import write_text  # noqa: E402
from aeb_app.errors import InputError  # noqa: E402
from aeb_app.video.sequence import TIMESTAMPS_NAME, first_time, read_timestamps  # noqa: E402

#: OXTS field holding the forward velocity (0-based), m/s.
VF_FIELD = 8
MAX_STANDING_NOISE_MPS = 0.3


def kitti_speed_rows(drive: Path, camera: str = "image_02") -> list[tuple[float, float]]:
    """(time_s on the camera's clock, forward speed m/s) per OXTS packet of ``drive``.

    Raises:
        InputError: a missing folder or file, a packet file that is not OXTS, a count mismatch, a reversing speed.
    """
    oxts = drive / "oxts"
    origin = first_time(drive / camera / TIMESTAMPS_NAME)
    packets = sorted((oxts / "data").glob("*.txt")) if (oxts / "data").is_dir() else []
    if not packets:
        raise InputError(f"{oxts / 'data'}: no OXTS packets (*.txt)")
    times = read_timestamps(oxts / TIMESTAMPS_NAME, len(packets), origin=origin)
    rows = []
    for t, packet in zip(times, packets):
        fields = packet.read_text().split()
        try:
            vf = float(fields[VF_FIELD])
        except (IndexError, ValueError):
            raise InputError(f"{packet}: not an OXTS packet (no forward velocity in field {VF_FIELD + 1})") from None
        if vf < -MAX_STANDING_NOISE_MPS:
            raise InputError(f"{packet}: forward velocity {vf} m/s: the car reverses (not a forward-warning case)")
        rows.append((t, max(vf, 0.0)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("drive", type=Path, help="a KITTI raw drive folder (holding oxts/ and the camera folder)")
    parser.add_argument("--camera", default="image_02", help="camera folder whose clock the CSV uses")
    parser.add_argument("--out", type=Path, required=True, help="CSV to write (atomically)")
    args = parser.parse_args()
    try:
        rows = kitti_speed_rows(args.drive, args.camera)
    except InputError as exc:
        print(f"kitti_speed: error: {exc}", file=sys.stderr)
        return 2
    write_text(args.out, "time_s,speed_mps\n" + "".join(f"{t:.6f},{v:.4f}\n" for t, v in rows))
    print(f"wrote {args.out}: {len(rows)} rows, {rows[0][0]:.3f}-{rows[-1][0]:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
