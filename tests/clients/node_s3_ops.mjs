// The standard S3 sequence through the AWS SDK for JavaScript v3 (node's own
// OpenSSL, compiled into the executable).  Usage:
//   node node_s3_ops.mjs ENDPOINT BUCKET BODY_SIZE      (CA: NODE_EXTRA_CA_CERTS)
// Prints {"pid": N, "calls": [{"op", "status", "ms"}]} on stdout.
import { createRequire } from "node:module";
import process from "node:process";

const require = createRequire(process.env.S3S_NODE_MODULES + "/");
const s3 = require("@aws-sdk/client-s3");

const [endpoint, bucket, size] = process.argv.slice(2);
const client = new s3.S3Client({
  endpoint, region: "us-east-1", forcePathStyle: true,
  credentials: { accessKeyId: "testing", secretAccessKey: "testing" },
  maxAttempts: 1,
});
const key = "dir/obj 1.bin";
const body = Buffer.alloc(Number(size), 7);
const calls = [];

async function timed(op, command, consume) {
  const t = performance.now();
  let status;
  try {
    const out = await client.send(command);
    if (consume && out.Body) await out.Body.transformToByteArray();
    status = out.$metadata.httpStatusCode;
  } catch (err) {
    status = err.$metadata ? err.$metadata.httpStatusCode : -1;
  }
  calls.push({ op, status, ms: performance.now() - t });
}

await timed("CreateBucket", new s3.CreateBucketCommand({ Bucket: bucket }));
await timed("PutObject", new s3.PutObjectCommand({ Bucket: bucket, Key: key, Body: body,
  ChecksumAlgorithm: undefined }));
await timed("GetObject", new s3.GetObjectCommand({ Bucket: bucket, Key: key }), true);
await timed("HeadObject", new s3.HeadObjectCommand({ Bucket: bucket, Key: key }));
await timed("ListObjectsV2", new s3.ListObjectsV2Command({ Bucket: bucket }));
await timed("GetObject", new s3.GetObjectCommand({ Bucket: bucket, Key: "missing" }), true);
await timed("DeleteObject", new s3.DeleteObjectCommand({ Bucket: bucket, Key: key }));
await timed("DeleteBucket", new s3.DeleteBucketCommand({ Bucket: bucket }));
client.destroy();
console.log(JSON.stringify({ pid: process.pid, calls }));
