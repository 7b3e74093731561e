// Runs a TF.js graph model with the reference TF.js runtime (pure-JS CPU backend) for parity checks.
// usage: node run_tfjs.js MODEL_JSON INPUT_BIN H W DTYPE [OUTPUT_NODE]
//   → prints {"shape": [...], "data": [...]} of output 0, or of the named output node
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
const converter = require('@tensorflow/tfjs-converter');

async function main() {
  const [modelJson, inputBin, height, width, dtype, outputNode] = process.argv.slice(2);
  await tf.setBackend('cpu');
  const spec = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
  const folder = path.dirname(modelJson);
  const weightSpecs = [];
  const buffers = [];
  for (const group of spec.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const shard of group.paths) buffers.push(fs.readFileSync(path.join(folder, shard)));
  }
  const joined = Buffer.concat(buffers);
  const weightData = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength);
  const handler = tf.io.fromMemory({ modelTopology: spec.modelTopology, weightSpecs, weightData, format: spec.format });
  const model = await converter.loadGraphModel(handler);
  const raw = fs.readFileSync(inputBin);
  const values = dtype === 'int32'
    ? new Int32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4)
    : new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const input = tf.tensor(values, [1, Number(height), Number(width), 3], dtype);
  const output = outputNode ? model.execute(input, outputNode) : model.execute(input);
  const first = Array.isArray(output) ? output[0] : output;
  process.stdout.write(JSON.stringify({ shape: first.shape, data: Array.from(await first.data()) }));
}

main().catch((error) => { console.error(error); process.exit(1); });
