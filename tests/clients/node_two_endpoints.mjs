// One node process, one thread (node's event loop), two S3 endpoints at once.
// Usage: node node_two_endpoints.mjs URL_A BUCKET_A URL_B BUCKET_B ROUNDS
// Puts one object per endpoint (A: 1000 bytes, B: 3000 bytes), then runs
// ROUNDS rounds of concurrent GETs on both endpoints, each on its own
// connection, interleaved on the one event loop.
// Prints {"pid", "tids": [...], "gets": [{"endpoint": "A"|"B", "key", "status"}]}.
import { createRequire } from "node:module";
import process from "node:process";

const require = createRequire(process.env.S3S_NODE_MODULES + "/");
const s3 = require("@aws-sdk/client-s3");
const [urlA, bucketA, urlB, bucketB, rounds] = process.argv.slice(2);
const sides = {
  A: { bucket: bucketA, size: 1000 },
  B: { bucket: bucketB, size: 3000 },
};
for (const [name, url] of [["A", urlA], ["B", urlB]]) {
  sides[name].client = new s3.S3Client({
    endpoint: url, region: "us-east-1", forcePathStyle: true, maxAttempts: 1,
    credentials: { accessKeyId: "testing", secretAccessKey: "testing" },
  });
}
for (const side of Object.values(sides)) {
  await side.client.send(new s3.CreateBucketCommand({ Bucket: side.bucket }));
  await side.client.send(new s3.PutObjectCommand({
    Bucket: side.bucket, Key: "obj", Body: Buffer.alloc(side.size, 1) }));
}
const gets = [];
for (let i = 0; i < Number(rounds); i++) {
  await Promise.all(["A", "B"].map(async (name) => {
    const side = sides[name];
    const out = await side.client.send(new s3.GetObjectCommand({ Bucket: side.bucket, Key: "obj" }));
    const body = await out.Body.transformToByteArray();
    if (body.length !== side.size) throw new Error(`short body on ${name}`);
    gets.push({ endpoint: name, key: "obj", status: out.$metadata.httpStatusCode });
  }));
}
for (const side of Object.values(sides)) side.client.destroy();
console.log(JSON.stringify({ pid: process.pid, gets }));
