#!/usr/bin/env bash
# GPU benchmark runs, executed on the lent H200 through the device tool from the repo root:
#   bash scripts/gpu_run.sh eager      # PyTorch eager/graph modes, both models, all batch sizes
#   bash scripts/gpu_run.sh compiled   # AOTInductor packages (built then timed)
#   bash scripts/gpu_run.sh fused      # speed_lab variants + fp16_fused/fp16_compiled sweeps + headless
#   bash scripts/gpu_run.sh final3     # the fused/compiled modes over the whole batch range, both models
#   WHL=.whl2 DATA=.gpue2e bash scripts/gpu_run.sh split
#                                      # host-thread / shared JPEG decoding on the GPU path (e2e vs network), the
#                                      # decoder probe, the split-decode and run-loop tests, mAP per decode place
#   WHL=.whl2 DATA=.gpue2e bash scripts/gpu_run.sh runs   # gpu_e2e.py's aeb-app run section alone
#   RESULTS=$OUT/owed WHL=".whl2 .whlnv" DATA=.gpue2e bash scripts/gpu_run.sh owed
#                                      # mAP per GPU resize / decode place, aeb-app run (batch 1/8/32, NVDEC), the
#                                      # AEB logic's CPU time on the GPU host, the run-loop tests
#   RESULTS=$OUT/graph WHL=".whl2 .whlnv" DATA=.gpue2e bash scripts/gpu_run.sh graph
#                                      # the whole-frame CUDA Graph: GPU tests, paced latency with / without it, runs
#   bash scripts/gpu_run.sh gpu_tests  # the backend contract test on the GPU (every mode vs FP32 on real frames)
#   WHL=.whl2 DATA=.gpue2e bash scripts/gpu_run.sh pending
#                                      # what 2026-12-05 could not measure (no device lent): the GPU-path tests
#                                      # (batched resize, streamed batches, tiled wide frames, run loop), then gpu_e2e.py's ssd300
#                                      # (interpolate vs matmul resize) and run (--batch 8/32) sections
# Needs: .whl/ (pycocotools, tflite wheels for the device's Python) and .gpudata/ (a copy of the
# asset mirror's model, COCO subset and video: the mirror itself does not travel). Results are
# packed into $OUT/results-<stage>.tgz; docs/benchmarks/ holds what came back.
set -uo pipefail
stage=${1:-eager}
WHL=${WHL:-.whl} DATA=${DATA:-.gpudata}
wheels=(); for d in $WHL; do wheels+=("$d"/*.whl); done  # WHL: one folder or several, space-separated
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${wheels[@]}" || exit 1
export PYTHONPATH=/tmp/site:$PWD AEB_APP_DATA_MIRROR=$PWD/$DATA AEB_APP_CACHE_DIR=/tmp/cache PYTHONUNBUFFERED=1
R=${RESULTS:-/tmp/results-$stage}  # RESULTS=$OUT/x: results land there as they are written (a run cut short keeps them)
mkdir -p "$R"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv | tee "$R/nvidia-smi.txt"
BATCHES=1,4,8,16,32,64
case $stage in
eager)
  python3 -m aeb_app bench --model ssd300_resnet50 --weights random \
    --modes fp16,fp16_graph,bf16,fp32,fp16_trt,fp32_trt,int8_trt --batches $BATCHES --out "$R/ssd300_resnet50" 2>&1 | tee "$R/ssd300.log"
  python3 -m aeb_app bench --model ssd300_resnet50 --weights random --tf32 \
    --modes fp32 --batches $BATCHES --out "$R/ssd300_resnet50_tf32" 2>&1 | tee "$R/ssd300_tf32.log"
  python3 -m aeb_app bench --model ssd_mobilenet_v1 --coco-dir .gpudata/coco/val2017_subset \
    --modes fp16,fp16_graph,bf16,fp32,fp32_ort,fp16_trt,fp32_trt,int8_trt --batches $BATCHES \
    --out "$R/ssd_mobilenet_v1" 2>&1 | tee "$R/mobilenet.log"
  if python3 -m aeb_app run --help >/dev/null 2>&1; then
    for mode in fp16_graph fp16 fp32; do
      python3 -m aeb_app run .gpudata/videos/udacity/solidWhiteRight.mp4 --mode $mode \
        --out "$R/run_$mode.mp4" 2>&1 | tail -5 | tee "$R/run_$mode.log"
      rm -f "$R/run_$mode.mp4"
    done
  fi
  ;;
compiled)
  python3 scripts/build_compiled.py --out "$R" 2>&1 | tee "$R/compiled.log"
  ;;
final)
  # Second session run: compiled packages (fast variant) + the MobileNet sweep + headless runs.
  python3 scripts/build_compiled.py --out "$R" --variants fast 2>&1 | tee "$R/compiled.log"
  python3 -m aeb_app bench --model ssd_mobilenet_v1 --coco-dir .gpudata/coco/val2017_subset \
    --modes fp16,fp16_graph,bf16,fp32,fp32_ort,fp16_trt,fp32_trt,int8_trt --batches $BATCHES \
    --out "$R/ssd_mobilenet_v1" 2>&1 | tee "$R/mobilenet.log"
  for mode in fp16_graph fp32; do
    python3 -m aeb_app run .gpudata/videos/udacity/solidWhiteRight.mp4 --mode $mode --no-progress \
      --out "$R/run_$mode.mp4" 2>&1 | tail -3 | tee "$R/run_$mode.log"
    rm -f "$R/run_$mode.mp4"
  done
  ;;
fused)
  # Third session: cuDNN-fused eager and torch.compile modes against the eager baselines.
  timeout 240 python3 scripts/speed_lab.py run --out "$R/speed_lab" --compile-budget 90 \
    --jobs jit_b64_cudnn,jit_b1_cudnn --eager eager_cudnn --profile eager_cudnn 2>&1 | tee "$R/speed_lab.log"
  timeout 200 python3 -m aeb_app bench --model ssd300_resnet50 --weights random \
    --modes fp16_fused,fp16_compiled,fp16_graph,fp16 --batches 1,64 --engines-dir /tmp/engines \
    --out "$R/ssd300_fused" 2>&1 | tee "$R/ssd300_fused.log"
  for mode in fp16_compiled; do
    timeout 100 python3 -m aeb_app run .gpudata/videos/udacity/solidWhiteRight.mp4 --mode $mode --no-progress \
      --out "$R/run_$mode.mp4" 2>&1 | tail -3 | tee "$R/run_$mode.log"
    rm -f "$R/run_$mode.mp4"
  done
  ;;
final3)
  timeout 330 python3 -m aeb_app bench --model ssd300_resnet50 --weights random \
    --modes fp16_compiled,fp16_fused,fp16_graph,fp16 --batches $BATCHES --engines-dir /tmp/engines \
    --out "$R/ssd300_resnet50_fused" 2>&1 | tee "$R/ssd300_fused.log"
  timeout 200 python3 -m aeb_app bench --model ssd_mobilenet_v1 --coco-dir .gpudata/coco/val2017_subset \
    --modes fp16_compiled,fp16_fused,fp16 --batches 1,64 --engines-dir /tmp/engines \
    --out "$R/ssd_mobilenet_v1_fused" 2>&1 | tee "$R/mobilenet_fused.log"
  ;;
gpu_tests)
  timeout 330 python3 -m pytest -q tests/test_backend_contract.py tests/test_fuse.py -k "not compiled_package" \
    2>&1 | tee "$R/contract_gpu.log"
  timeout 150 python3 -m aeb_app bench --model ssd300_resnet50 --weights random --modes bf16_compiled \
    --batches 1,64 --engines-dir /tmp/engines --out "$R/ssd300_bf16_compiled" 2>&1 | tee "$R/bf16_compiled.log"
  ;;
pending)
  timeout 200 python3 -m pytest -q -rA tests/test_gpu_frames.py tests/test_run_loop.py 2>&1 | tee "$R/gpu_path_tests.log"
  timeout 330 python3 scripts/gpu_e2e.py --coco-dir $DATA/coco/val2017_subset \
    --video $DATA/videos/udacity/solidWhiteRight.mp4 --out "$R/gpu_e2e" --sections ssd300,run 2>&1 | tee "$R/gpu_e2e.log"
  ;;
split)
  # Fourth session: host threads decoding beside / instead of nvJPEG (aeb_app/inference/run/split_decode.py),
  # the decoder probe (CPU pool sizes, nvImageCodec's hardware JPEG engines if .nvimg is carried), GPU tests.
  if [ -d .nvimg ]; then  # nvImageCodec unpacked (no pip index there): importable as nvidia.nvimgcodec
    mkdir -p /tmp/site/nvidia && cp -r .nvimg/nvimgcodec /tmp/site/nvidia/
    printf 'try:\n    import nvidia\n    if "/tmp/site/nvidia" not in list(nvidia.__path__):\n        nvidia.__path__.append("/tmp/site/nvidia")\nexcept ImportError:\n    pass\n' > /tmp/site/sitecustomize.py
    export LD_LIBRARY_PATH=$PWD/.nvimg/cu13/lib:${LD_LIBRARY_PATH:-} NVIMGCODEC_EXTENSIONS_PATH=/tmp/site/nvidia/nvimgcodec/extensions
    python3 -c "from nvidia import nvimgcodec; print('nvimgcodec', nvimgcodec.__version__)" 2>&1 | tail -2
  fi
  timeout 200 python3 scripts/gpu_e2e.py --coco-dir $DATA/coco/val2017_subset \
    --video $DATA/videos/udacity/solidWhiteRight.mp4 --out "$R/gpu_e2e" --sections ssd300 2>&1 | tee "$R/gpu_e2e.log"
  timeout 120 python3 -m pytest -q -rA tests/test_split_decode.py tests/test_run_loop.py 2>&1 | tee "$R/gpu_tests.log"
  timeout 120 python3 scripts/decode_probe.py --coco-dir $DATA/coco/val2017_subset \
    --nvimgcodec .nvimg/nvimgcodec --out "$R/probe" 2>&1 | tee "$R/probe.log"
  timeout 100 python3 scripts/gpu_e2e.py --coco-dir $DATA/coco/val2017_subset \
    --video $DATA/videos/udacity/solidWhiteRight.mp4 --out "$R/gpu_e2e_map" --sections map 2>&1 | tee "$R/gpu_e2e_map.log"
  ;;
runs)
  # aeb-app run on the sample clip (mp4 / events only, batch 1 / 8 / 32, NVDEC when .whlnv's PyNvVideoCodec is in WHL)
  timeout 280 python3 scripts/gpu_e2e.py --coco-dir $DATA/coco/val2017_subset \
    --video $DATA/videos/udacity/solidWhiteRight.mp4 --out "$R/gpu_e2e_run" --sections run 2>&1 | tee "$R/gpu_e2e_run.log"
  ;;
owed)
  # Fifth session: what the fourth could not measure, most wanted first (a run cut short keeps what came before).
  # aeb-app run paced like a camera (--realtime: the latency) and as fast as it goes (batch 32 / 1, NVDEC when .whlnv
  # is in WHL); the rewritten run-loop tests; mAP of the GPU path with the matmul resize (and the other decode places)
  # against the CPU path; the AEB logic's CPU time per frame on this host.
  timeout 300 python3 scripts/gpu_e2e.py --coco-dir $DATA/coco/val2017_subset \
    --video $DATA/videos/udacity/solidWhiteRight.mp4 --out "$R/gpu_e2e_run" --sections run 2>&1 | tee "$R/gpu_e2e_run.log"
  timeout 90 python3 -m pytest -q -rA tests/test_run_loop.py 2>&1 | tee "$R/run_loop_tests.log"
  timeout 120 python3 scripts/gpu_e2e.py --coco-dir $DATA/coco/val2017_subset \
    --video $DATA/videos/udacity/solidWhiteRight.mp4 --out "$R/gpu_e2e_map" --sections map 2>&1 | tee "$R/gpu_e2e_map.log"
  timeout 40 python3 scripts/stage_cpu_times.py $DATA/videos/udacity/solidWhiteRight.mp4 --logic-only --repeat 7 \
    --profile 25 2>&1 | tee "$R/logic_cpu.log"
  ;;
graph)
  # Sixth session: the whole-frame CUDA Graph (aeb_app/inference/run/frame_graph.py) and the frozen start-up heap
  # (aeb-app run): GPU tests, then the paced latency with each switched off in turn (alternating; every run's
  # per-frame --timings rows in gpu_e2e_run/timings.csv), the run as fast as it goes, the logic's CPU time on this host.
  # The device tool brings back only a few files and not deep folders: use RESULTS=$OUT, keep the file count low.
  timeout 200 python3 -m pytest -q -rA tests/test_gpu_frames.py tests/test_run_loop.py ${TESTS_K:+-k "$TESTS_K"} \
    2>&1 | tee "$R/gpu_tests.log"
  P=events_only_realtime_sequential
  timeout 400 python3 scripts/gpu_e2e.py --coco-dir $DATA/coco/val2017_subset \
    --video $DATA/videos/udacity/solidWhiteRight.mp4 --out "$R/gpu_e2e_run" --sections run --runs \
    ${RUNS:-$P,${P}_nofreeze,${P}_nograph,$P,${P}_nofreeze,${P}_nograph,events_only_realtime,events_only_auto,events_only_batch32,mp4_auto} \
    2>&1 | tee "$R/gpu_e2e_run.log"
  timeout 40 python3 scripts/stage_cpu_times.py $DATA/videos/udacity/solidWhiteRight.mp4 --logic-only --repeat 7 \
    2>&1 | tee "$R/logic_cpu.log"
  ;;
contract)
  timeout 300 python3 -m pytest -q -rA tests/test_backend_contract.py -k "not compiled_package" \
    2>&1 | tee "$R/contract_gpu.log"
  ;;
esac
if [ -z "${RESULTS:-}" ]; then tar czf "$OUT/results-$stage.tgz" -C "$R" .; fi
