// Reference descriptors for face-api's FaceRecognitionNet (dlib ResNet-29 port).
//
// Usage: node make-reference.mjs OUT.json [MODEL_DIR]
//
// MODEL_DIR defaults to the model/ folder shipped inside the installed
// @vladmandic/face-api package. The output is a small JSON fixture consumed by
// the Rust port's tests; see README.md next to this file.

import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
// The node-wasm build has no native binding; it bundles against the pure-JS
// @tensorflow/tfjs and re-exports that tf instance as faceapi.tf.
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const tf = faceapi.tf;

const outPath = process.argv[2];
if (!outPath) {
  console.error('usage: node make-reference.mjs OUT.json [MODEL_DIR]');
  process.exit(2);
}
const pkgDir = path.dirname(require.resolve('@vladmandic/face-api/package.json'));
const modelDir = process.argv[3] ?? path.join(pkgDir, 'model');

const SIZE = 150;
const MEAN_RGB = [122.782, 117.001, 104.298];
const FORMULA = 'pixel(n, y, x, c) = (a_n*y + b_n*x + c_n*c + d_n*((x*y) % 7)) % 256, '
  + 'y,x in 0..150, c in 0..3 (R,G,B), HWC layout, all integer arithmetic, value cast to f32';
const CONSTANTS = [
  { a: 3, b: 5, c: 7, d: 11 },
  { a: 1, b: 2, c: 85, d: 13 },
  { a: 7, b: 1, c: 50, d: 29 },
  { a: 2, b: 9, c: 31, d: 5 },
];

function makeImage({ a, b, c, d }) {
  const px = new Float32Array(SIZE * SIZE * 3);
  let i = 0;
  for (let y = 0; y < SIZE; y += 1) {
    for (let x = 0; x < SIZE; x += 1) {
      for (let ch = 0; ch < 3; ch += 1) {
        px[i] = (a * y + b * x + c * ch + d * ((x * y) % 7)) % 256;
        i += 1;
      }
    }
  }
  return px;
}

// float32 -> shortest decimal that round-trips through f32 (9 significant digits).
const f32 = (v) => Number(Math.fround(v).toPrecision(9));

function maxAbsDiff(x, y) {
  if (x.length !== y.length) throw new Error(`length mismatch ${x.length} vs ${y.length}`);
  let m = 0;
  for (let i = 0; i < x.length; i += 1) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

function checkpoint(name, t, desc) {
  const v = t.dataSync();
  let sum = 0;
  for (let i = 0; i < v.length; i += 1) sum += v[i];
  return {
    name,
    description: desc,
    shape: t.shape,
    sum,
    first8: Array.from(v.slice(0, 8), f32),
  };
}

// Same op sequence as src/faceRecognitionNet/{convLayer,residualLayer,scaleLayer}.ts.
function convLayer(x, p, strides, withRelu, padding = 'same') {
  let out = tf.conv2d(x, p.conv.filters, strides, padding);
  out = tf.add(out, p.conv.bias);
  out = tf.add(tf.mul(out, p.scale.weights), p.scale.biases);
  return withRelu ? tf.relu(out) : out;
}
const conv = (x, p) => convLayer(x, p, [1, 1], true);
const convNoRelu = (x, p) => convLayer(x, p, [1, 1], false);
const convDown = (x, p) => convLayer(x, p, [2, 2], true, 'valid');

function residual(x, p) {
  let out = conv(x, p.conv1);
  out = convNoRelu(out, p.conv2);
  return tf.relu(tf.add(out, x));
}

function residualDown(x, p) {
  let out = convDown(x, p.conv1);
  out = convNoRelu(out, p.conv2);
  let pooled = tf.avgPool(x, 2, 2, 'valid');
  const zeros = tf.zeros(pooled.shape);
  const isPad = pooled.shape[3] !== out.shape[3];
  const isAdjustShape = pooled.shape[1] !== out.shape[1] || pooled.shape[2] !== out.shape[2];
  if (isAdjustShape) {
    const padX = [...out.shape]; padX[1] = 1;
    out = tf.concat([out, tf.zeros(padX)], 1);
    const padY = [...out.shape]; padY[2] = 1;
    out = tf.concat([out, tf.zeros(padY)], 2);
  }
  pooled = isPad ? tf.concat([pooled, zeros], 3) : pooled;
  return tf.relu(tf.add(pooled, out));
}

function replicate(batch, params, checkpoints) {
  // As src/ops/normalize.ts: subtract a [N,H,W,3] tensor filled with the per-channel mean.
  const fillShape = [...batch.shape.slice(0, 3), 1];
  const meanRgb = tf.concat(MEAN_RGB.map((m) => tf.fill(fillShape, m, 'float32')), 3);
  const normalized = tf.div(tf.sub(batch, meanRgb), 255);
  let out = convDown(normalized, params.conv32_down);
  checkpoints.push(checkpoint('conv32_down', out, 'stem: conv 7x7 stride 2 valid + bias + scale + relu'));
  out = tf.maxPool(out, 3, 2, 'valid');
  checkpoints.push(checkpoint('maxpool', out, 'maxPool 3x3 stride 2 valid'));
  out = residual(out, params.conv32_1);
  out = residual(out, params.conv32_2);
  out = residual(out, params.conv32_3);
  out = residualDown(out, params.conv64_down);
  checkpoints.push(checkpoint('conv64_down', out, 'output of residualDown conv64_down (after relu)'));
  out = residual(out, params.conv64_1);
  out = residual(out, params.conv64_2);
  out = residual(out, params.conv64_3);
  out = residualDown(out, params.conv128_down);
  out = residual(out, params.conv128_1);
  out = residual(out, params.conv128_2);
  out = residualDown(out, params.conv256_down);
  out = residual(out, params.conv256_1);
  out = residual(out, params.conv256_2);
  out = residualDown(out, params.conv256_down_out);
  checkpoints.push(checkpoint('conv256_down_out', out, 'output of residualDown conv256_down_out (after relu, before spatial mean)'));
  const avg = out.mean([1, 2]);
  return tf.matMul(avg, params.fc);
}

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();
  const backend = tf.getBackend();
  if (backend !== 'cpu') throw new Error(`expected cpu backend, got ${backend}`);

  const net = faceapi.nets.faceRecognitionNet;
  await net.loadFromDisk(modelDir);

  const images = CONSTANTS.map(makeImage);
  // toNetInput rejects a Tensor4D with batch > 1, so the batch is passed as an
  // array of Tensor3D [150,150,3]; NetInput stacks them into [N,150,150,3].
  const inputs = images.map((px) => tf.tensor3d(px, [SIZE, SIZE, 3], 'float32'));
  const stacked = tf.stack(inputs);
  const netInput = await faceapi.toNetInput(inputs);

  // toBatchTensor must be the identity for 150x150 inputs (no pad, no resize).
  const batchTensor = netInput.toBatchTensor(SIZE, true);
  const batchDiff = maxAbsDiff(batchTensor.dataSync(), stacked.dataSync());
  console.log(`toBatchTensor vs raw stacked input: shape ${batchTensor.shape}, max abs diff ${batchDiff}`);
  if (batchDiff !== 0) throw new Error('toBatchTensor is not an identity for 150x150 input');

  const fwd = net.forwardInput(netInput);
  const fwdData = fwd.dataSync();
  const descriptors = await net.computeFaceDescriptor(inputs);
  const descDiff = maxAbsDiff(fwdData, Float32Array.from(descriptors.flatMap((d) => Array.from(d))));
  console.log(`computeFaceDescriptor vs forwardInput: max abs diff ${descDiff}`);
  if (descDiff !== 0) throw new Error('computeFaceDescriptor and forwardInput disagree');

  // Replicated forward for image 0 only (batch of 1), with checkpoints.
  const checkpoints = [];
  const rep = replicate(tf.expandDims(inputs[0], 0), net.params, checkpoints);
  const repDiff = maxAbsDiff(rep.dataSync(), fwdData.slice(0, 128));
  console.log(`replicated forward (image 0, batch 1) vs forwardInput row 0: max abs diff ${repDiff}`);
  if (repDiff > 1e-5) throw new Error(`replication mismatch: ${repDiff}`);

  const out = {
    generator: 'scripts/faceapi-reference/make-reference.mjs',
    versions: {
      'face-api': faceapi.version,
      tfjs: tf.version.tfjs ?? tf.version_core,
      'tfjs-core': tf.version_core,
      node: process.version,
    },
    tf_backend: backend,
    model: 'face_recognition_model (weights manifest + .bin from the face-api npm package)',
    input: {
      size: [SIZE, SIZE, 3],
      layout: 'HWC per image, batch NHWC',
      formula: FORMULA,
      constants: CONSTANTS,
      preprocessing: 'x = (pixel - mean_rgb[c]) / 255 in float32; toBatchTensor is an identity for 150x150 tensors',
      mean_rgb: MEAN_RGB,
    },
    toBatchTensor_max_abs_diff: batchDiff,
    descriptors: descriptors.map((d, n) => {
      let sq = 0;
      for (const v of d) sq += v * v;
      return { image: n, norm: Math.sqrt(sq), values: Array.from(d, f32) };
    }),
    checkpoints_image0: {
      order: 'values flattened in NHWC order (first8 = channels 0..7 at n=0, y=0, x=0); sum accumulated in f64 over the f32 values',
      replication_max_abs_diff: repDiff,
      items: checkpoints,
    },
  };
  fs.mkdirSync(path.dirname(path.resolve(outPath)), { recursive: true });
  fs.writeFileSync(outPath, `${JSON.stringify(out, null, 1)}\n`);
  for (const d of out.descriptors) console.log(`descriptor ${d.image}: norm ${d.norm}`);
  console.log(`wrote ${outPath} (${fs.statSync(outPath).size} bytes)`);
}

main().catch((e) => { console.error(e); process.exit(1); });
