// Run the TF.js COCO-SSD lite_mobilenet_v2 graph model with the TF.js CPU backend in Node.
//
// Usage: node reference.js MODEL_DIR WORK_DIR
//   MODEL_DIR: model.json + its weight shards.
//   WORK_DIR/inputs.json: [{"name": ..., "file": "x.rgb", "height": H, "width": W}], each file the
//   raw RGB uint8 bytes of one image (H x W x 3). The graph's own preprocessing runs (cast,
//   ResizeBilinear to 300x300, x * 2/255 - 1).
// Writes, per image, WORK_DIR/<file>.scores.f32 (1917 x 90, background removed) and
// <file>.boxes.f32 (1917 x 4, ymin xmin ymax xmax normalised): the graph's two outputs, and
// WORK_DIR/detections.json: per-class NMS done by TF.js itself (tf.image.nonMaxSuppressionAsync,
// IoU 0.5, score > 0.3, at most 100 per image), plus versions.
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

const IOU = 0.5;
const SCORE = 0.3;
const MAX_DETS = 100;

function loadHandler(modelDir) {
  const mj = JSON.parse(fs.readFileSync(path.join(modelDir, 'model.json'), 'utf8'));
  const bufs = [];
  for (const group of mj.weightsManifest) {
    for (const p of group.paths) bufs.push(fs.readFileSync(path.join(modelDir, p)));
  }
  const all = Buffer.concat(bufs);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const weightSpecs = mj.weightsManifest.flatMap((g) => g.weights);
  return { load: async () => ({ modelTopology: mj.modelTopology, weightSpecs, weightData }) };
}

async function perClassNms(boxes, scores) {
  // boxes: [A, 4] tensor; scores: Float32Array A x C.
  const numClasses = scores.length / boxes.shape[0];
  const numAnchors = boxes.shape[0];
  const dets = [];
  for (let c = 0; c < numClasses; c++) {
    const col = new Float32Array(numAnchors);
    let best = 0;
    for (let a = 0; a < numAnchors; a++) { col[a] = scores[a * numClasses + c]; best = Math.max(best, col[a]); }
    if (best <= SCORE) continue;
    const colT = tf.tensor1d(col);
    const keep = await tf.image.nonMaxSuppressionAsync(boxes, colT, MAX_DETS, IOU, SCORE);
    for (const a of keep.dataSync()) dets.push({ anchor: a, class_index: c, score: col[a] });
    colT.dispose();
    keep.dispose();
  }
  dets.sort((x, y) => y.score - x.score);
  return dets.slice(0, MAX_DETS);
}

async function main() {
  const [modelDir, workDir] = process.argv.slice(2);
  if (!modelDir || !workDir) throw new Error('usage: node reference.js MODEL_DIR WORK_DIR');
  await tf.setBackend('cpu');
  await tf.ready();
  const model = await tf.loadGraphModel(loadHandler(modelDir));
  const inputs = JSON.parse(fs.readFileSync(path.join(workDir, 'inputs.json'), 'utf8'));
  const results = [];
  for (const item of inputs) {
    const bytes = fs.readFileSync(path.join(workDir, item.file));
    const x = tf.tensor4d(Int32Array.from(bytes), [1, item.height, item.width, 3], 'int32');
    const outs = await model.executeAsync(x);
    const byRank = Object.fromEntries(outs.map((t) => [t.rank, t]));
    const scoresT = byRank[3].reshape([-1, byRank[3].shape[2]]); // [1917, 90]
    const boxesT = byRank[4].reshape([-1, 4]); // [1917, 4]
    const scores = scoresT.dataSync();
    fs.writeFileSync(path.join(workDir, item.file + '.scores.f32'), Buffer.from(scores.buffer));
    fs.writeFileSync(path.join(workDir, item.file + '.boxes.f32'), Buffer.from(boxesT.dataSync().buffer));
    const dets = await perClassNms(boxesT, scores);
    const boxes = boxesT.arraySync();
    results.push({
      name: item.name,
      scores_shape: scoresT.shape,
      detections: dets.map((d) => ({ ...d, box_yxyx: boxes[d.anchor] })),
    });
    tf.dispose([x, scoresT, boxesT, ...outs]);
  }
  const versions = {
    node: process.version,
    tfjs: tf.version.tfjs,
    'tfjs-core': tf.version['tfjs-core'],
    'tfjs-converter': tf.version['tfjs-converter'],
    'tfjs-backend-cpu': tf.version['tfjs-backend-cpu'],
    backend: tf.getBackend(),
  };
  const nms = { per_class: true, iou_threshold: IOU, score_threshold: SCORE, max_detections: MAX_DETS,
    op: 'tf.image.nonMaxSuppressionAsync' };
  fs.writeFileSync(path.join(workDir, 'detections.json'), JSON.stringify({ versions, nms, results }));
}

main().catch((err) => { console.error(err.stack || String(err)); process.exit(1); });
