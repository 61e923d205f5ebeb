/**
 * S3Presigner must produce exactly the URL the AWS SDK would: same host and
 * path, same query parameters in the same order, same signature.
 *
 * - Property test against @smithy/signature-v4 configured the way
 *   @aws-sdk/s3-request-presigner configures it (service "s3",
 *   uriEscapePath: false, applyChecksum: false, an X-Amz-Content-Sha256:
 *   UNSIGNED-PAYLOAD header that gets hoisted into the query). The request
 *   path and the final URL are built here with an independent, byte-wise
 *   RFC 3986 encoder, so an encoding bug in the presigner cannot hide behind
 *   the same bug in the reference.
 * - Property + fixed cases against getSignedUrl with a real S3Client, which
 *   also covers the SDK's own key serialisation and virtual-host/path-style
 *   choice. Presigning is local: no network.
 * - Unit tests for the expiry clamp.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { isIP } from "node:net";
import fc from "fast-check";
import { SignatureV4 } from "@smithy/signature-v4";
import { Hash } from "@smithy/hash-node";
import { HttpRequest } from "@smithy/protocol-http";
import {
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import {
  S3Presigner,
  SIGV4_MAX_EXPIRES_SECONDS,
  type S3PresignCredentials,
} from "../../src/stores/blobs/sigv4-presign.js";

// ---------------------------------------------------------------- reference

/** RFC 3986 percent-encoding, byte by byte over the UTF-8 form. */
function refEscape(s: string): string {
  let out = "";
  for (const byte of new TextEncoder().encode(s)) {
    const c = String.fromCharCode(byte);
    out += /^[A-Za-z0-9\-._~]$/.test(c) ? c : "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}
const refEscapePath = (key: string): string => key.split("/").map(refEscape).join("/");

interface Case {
  method: "GET" | "PUT" | "HEAD";
  endpoint: string;
  region: string;
  forcePathStyle: boolean;
  credentials: S3PresignCredentials;
  bucket: string;
  key: string;
  expires: number;
  now: Date;
  query: Record<string, string>;
}

/**
 * What the SDK's endpoint rules pick: virtual host for a named (non-IP) host
 * and a bucket that is a lowercase 3..63-char DNS label, or over http a
 * dot-separated run of them.
 */
function isVirtualHosted(c: Case): boolean {
  const url = new URL(c.endpoint);
  const label = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;
  const hostable = url.protocol === "http:" ? c.bucket.split(".").every((l) => label.test(l)) : label.test(c.bucket);
  return !c.forcePathStyle && hostable && isIP(url.hostname.replace(/^\[|\]$/g, "")) === 0;
}

async function smithyPresign(c: Case): Promise<string> {
  const url = new URL(c.endpoint);
  const virtual = isVirtualHosted(c);
  const hostname = virtual ? `${c.bucket}.${url.hostname}` : url.hostname;
  const port = url.port === "" ? undefined : Number(url.port);
  const base = url.pathname.replace(/\/+$/, "");
  const path = virtual ? `${base}/${refEscapePath(c.key)}` : `${base}/${refEscape(c.bucket)}/${refEscapePath(c.key)}`;
  const request = new HttpRequest({
    method: c.method,
    protocol: url.protocol,
    hostname,
    ...(port === undefined ? {} : { port }),
    path,
    query: { ...c.query },
    headers: {
      // What S3RequestPresigner.prepareRequest adds.
      host: port === undefined ? hostname : `${hostname}:${port}`,
      "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD",
    },
  });
  const signer = new SignatureV4({
    service: "s3",
    region: c.region,
    credentials: {
      accessKeyId: c.credentials.accessKeyId,
      secretAccessKey: c.credentials.secretAccessKey,
      ...(c.credentials.sessionToken === undefined ? {} : { sessionToken: c.credentials.sessionToken }),
    },
    sha256: Hash.bind(null, "sha256"),
    uriEscapePath: false,
    applyChecksum: false,
  });
  const signed = await signer.presign(request, {
    signingDate: c.now,
    expiresIn: c.expires,
    unsignableHeaders: new Set(["content-type"]),
  });
  // Same layout as @aws-sdk/core formatUrl: keys sorted unescaped.
  const query = signed.query as Record<string, string>;
  const qs = Object.keys(query)
    .sort()
    .map((k) => `${refEscape(k)}=${refEscape(query[k] as string)}`)
    .join("&");
  const portPart = signed.port === undefined ? "" : `:${signed.port}`;
  return `${signed.protocol}//${signed.hostname}${portPart}${signed.path}?${qs}`;
}

function ours(c: Case): string {
  const presigner = new S3Presigner({
    endpoint: c.endpoint,
    region: c.region,
    forcePathStyle: c.forcePathStyle,
    credentials: c.credentials,
  });
  return presigner.presign({
    method: c.method,
    bucket: c.bucket,
    key: c.key,
    expiresInSeconds: c.expires,
    now: c.now,
    query: c.query,
  });
}

// ---------------------------------------------------------------- generators

// Characters that stress encoding: sub-delims encodeURIComponent leaves
// alone, unreserved ones that must stay, `%` (no double decoding), `/`-like
// and dot segments, multi-byte UTF-8, astral plane, controls.
const nastyChar = fc.constantFrom(
  " ", "+", "~", "%", "=", "&", "?", "#", "!", "'", "(", ")", "*", ":", "@", ",", ";", "$",
  "[", "]", "\\", "^", "`", "{", "}", "|", "<", ">", '"', ".", "..", "-", "_",
  "\t", "\n", "\u0000", "\u007f", "é", "ß", "€", "日本", "\u00a0", "\u200b", "😀", "%2F", "%25",
);
const keyChar = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 1 }) },
  { weight: 3, arbitrary: nastyChar },
  { weight: 2, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
);
const segment = fc.string({ unit: keyChar, maxLength: 12 });
// Deep paths; empty segments give "//", a leading "" gives a leading "/".
const objectKey = fc
  .array(segment, { minLength: 1, maxLength: 24 })
  .map((segments) => segments.join("/"))
  .filter((key) => key !== "");

const dnsBucket = fc.stringMatching(/^[a-z0-9][a-z0-9-]{1,20}[a-z0-9]$/);
const otherBucket = fc.oneof(
  fc.stringMatching(/^[a-z0-9][a-z0-9.-]{1,20}[a-z0-9]$/), // dots: path style unless forced
  fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{1,20}$/), // legacy names with capitals/underscores
);
// Dot-separated labels of 3+ chars: virtual-hostable over http only.
const dottedBucket = fc.array(fc.stringMatching(/^[a-z0-9][a-z0-9-]{1,6}[a-z0-9]$/), { minLength: 2, maxLength: 4 }).map((l) => l.join("."));
const bucket = fc.oneof(dnsBucket, dottedBucket, otherBucket);

const region = fc.oneof(
  fc.constantFrom("us-east-1", "us-west-2", "eu-central-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1"),
  fc.stringMatching(/^[a-z]{2}-[a-z]{4,9}-[1-9]$/),
);
const endpointFor = (r: string): fc.Arbitrary<string> =>
  fc.constantFrom(
    `https://s3.${r}.amazonaws.com`,
    "https://s3.amazonaws.com:443", // default port: dropped from host
    "http://127.0.0.1:7480",
    "http://localhost:9000",
    "https://minio.internal:8443",
    "http://storage.example:80",
    "http://[::1]:9000",
    "http://rgw.example:8080/s3-prefix/",
  );

const base64ish = (min: number, max: number): fc.Arbitrary<string> =>
  fc.string({ unit: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="), minLength: min, maxLength: max });
const credentials: fc.Arbitrary<S3PresignCredentials> = fc.record(
  {
    accessKeyId: fc.stringMatching(/^(AKIA|ASIA)[A-Z0-9]{16}$/),
    secretAccessKey: fc.oneof(base64ish(40, 40), fc.string({ unit: "binary", minLength: 1, maxLength: 50 })),
    sessionToken: base64ish(1, 400),
  },
  { requiredKeys: ["accessKeyId", "secretAccessKey"] },
);

// Signing time: any millisecond from 1971 to 2999 (SigV4 drops the ms).
const signingDate = fc.date({ min: new Date("1971-01-01T00:00:00Z"), max: new Date("2999-12-31T23:59:59.999Z"), noInvalidDate: true });

const reservedName = /^x-amz-(algorithm|content-sha256|credential|date|expires|security-token|signature|signedheaders)$/i;
const extraQuery: fc.Arbitrary<Record<string, string>> = fc.oneof(
  fc.constant({}),
  fc.record({
    partNumber: fc.integer({ min: 1, max: 10000 }).map(String),
    uploadId: fc.oneof(base64ish(1, 80), fc.string({ unit: keyChar, maxLength: 20 })),
  }),
  fc.record(
    {
      "x-id": fc.constantFrom("GetObject", "PutObject", "UploadPart"),
      "response-content-disposition": fc.string({ unit: keyChar, maxLength: 30 }).map((s) => `attachment; filename="${s}"`),
      versionId: base64ish(0, 32),
    },
    { requiredKeys: [] },
  ),
  // Arbitrary names: escaped order differs from unescaped order (canonical
  // query vs URL), and some are x-amz-* names the presigner lets through.
  fc.dictionary(
    fc.oneof(fc.string({ unit: keyChar, minLength: 1, maxLength: 8 }), fc.constantFrom("x-amz-checksum-mode", "X-Amz-Z", "A", "X", "a")),
    fc.string({ unit: keyChar, maxLength: 12 }),
    { maxKeys: 4, noNullPrototype: true },
  ).map((d) => Object.fromEntries(Object.entries(d).filter(([k]) => !reservedName.test(k) && k !== "__proto__"))),
);

const caseArb: fc.Arbitrary<Case> = region.chain((r) =>
  fc.record({
    method: fc.constantFrom("GET" as const, "PUT" as const, "HEAD" as const),
    endpoint: endpointFor(r),
    region: fc.constant(r),
    forcePathStyle: fc.boolean(),
    credentials,
    bucket,
    key: objectKey,
    expires: fc.integer({ min: 1, max: SIGV4_MAX_EXPIRES_SECONDS }),
    now: signingDate,
    query: extraQuery,
  }),
);

// ---------------------------------------------------------------- properties

test("byte-identical to @smithy/signature-v4 presign (property)", async () => {
  let withToken = 0, virtual = 0, withQuery = 0, unicode = 0;
  await fc.assert(
    fc.asyncProperty(caseArb, async (c) => {
      if (c.credentials.sessionToken !== undefined) withToken++;
      if (isVirtualHosted(c)) virtual++;
      if (Object.keys(c.query).length > 0) withQuery++;
      if (/[^\x00-\x7f]/.test(c.key)) unicode++;
      assert.equal(ours(c), await smithyPresign(c));
    }),
    { numRuns: 600 },
  );
  // The generators must actually reach each branch.
  for (const [what, n] of Object.entries({ withToken, virtual, withQuery, unicode })) {
    assert.ok(n >= 50, `only ${n} cases ${what}`);
  }
});

test("one presigner reused across days, rotated secrets and tokens matches smithy (its caches)", async () => {
  const presigner = new S3Presigner({
    endpoint: "https://s3.eu-west-1.amazonaws.com",
    region: "eu-west-1",
    forcePathStyle: false,
    credentials: { accessKeyId: "AKIA0", secretAccessKey: "s0" },
  });
  const secrets = fc.constantFrom(
    { accessKeyId: "AKIA0", secretAccessKey: "s0" },
    { accessKeyId: "AKIA0", secretAccessKey: "s1" }, // rotated secret, same key id
    { accessKeyId: "AKIA1", secretAccessKey: "s0", sessionToken: "tok/1+" },
    { accessKeyId: "AKIA1", secretAccessKey: "s0", sessionToken: "tok/2=" }, // refreshed token
  );
  // Few distinct days, so the cache both hits and misses, across midnight.
  const day = fc.constantFrom("2024-02-28", "2024-02-29", "2024-03-01");
  // Mostly distinct seconds, sometimes the same second with other ms.
  const time = fc.oneof(fc.integer({ min: 0, max: 86_399_999 }), fc.integer({ min: 43_200_000, max: 43_201_999 }));
  await fc.assert(
    fc.asyncProperty(secrets, day, time, objectKey, async (creds, d, ms, key) => {
      const now = new Date(Date.parse(`${d}T00:00:00Z`) + ms);
      presigner.setCredentials(creds);
      const got = presigner.presign({ method: "GET", bucket: "bkt", key, expiresInSeconds: 900, now });
      const want = await smithyPresign({
        method: "GET", endpoint: "https://s3.eu-west-1.amazonaws.com", region: "eu-west-1", forcePathStyle: false,
        credentials: creds, bucket: "bkt", key, expires: 900, now, query: {},
      });
      assert.equal(got, want);
    }),
    { numRuns: 200 },
  );
});

/** An S3Client as an application would configure it, minus the checksum params the SDK adds by default. */
function sdkClient(c: Pick<Case, "endpoint" | "region" | "forcePathStyle" | "credentials">, quiet = true): S3Client {
  return new S3Client({
    endpoint: c.endpoint,
    region: c.region,
    forcePathStyle: c.forcePathStyle,
    credentials: {
      accessKeyId: c.credentials.accessKeyId,
      secretAccessKey: c.credentials.secretAccessKey,
      ...(c.credentials.sessionToken === undefined ? {} : { sessionToken: c.credentials.sessionToken }),
    },
    ...(quiet ? { requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED" } : {}),
  });
}

type Op = "GetObject" | "HeadObject" | "PutObject" | "UploadPart";

async function sdkSignedUrl(client: S3Client, op: Op, c: Case, part?: { partNumber: number; uploadId: string }): Promise<string> {
  const io = { Bucket: c.bucket, Key: c.key };
  const options = { expiresIn: c.expires, signingDate: c.now };
  switch (op) {
    case "GetObject": return getSignedUrl(client, new GetObjectCommand(io), options);
    case "HeadObject": return getSignedUrl(client, new HeadObjectCommand(io), options);
    case "PutObject": return getSignedUrl(client, new PutObjectCommand(io), options);
    case "UploadPart":
      return getSignedUrl(client, new UploadPartCommand({ ...io, PartNumber: part?.partNumber, UploadId: part?.uploadId }), options);
  }
}

/** Our input for the same operation: method plus the query params the SDK serialiser adds. */
function asOurs(op: Op, c: Case, part?: { partNumber: number; uploadId: string }): Case {
  const method = op === "GetObject" ? "GET" : op === "HeadObject" ? "HEAD" : "PUT";
  const query: Record<string, string> = op === "HeadObject" ? {} : { "x-id": op };
  if (part) Object.assign(query, { partNumber: String(part.partNumber), uploadId: part.uploadId });
  return { ...c, method, query };
}

// S3 refuses bucket names with an `xn--` label (punycode), and the SDK cannot build a URL for an
// invalid one (`xn--a.` is no valid IDNA host), so the comparison leaves them out.
const sdkBucket = fc
  .oneof(dnsBucket, dottedBucket, fc.stringMatching(/^[a-z0-9][a-z0-9.-]{1,20}[a-z0-9]$/))
  .filter((name) => !name.split(".").some((label) => label.startsWith("xn--")));

test("byte-identical to getSignedUrl from @aws-sdk/s3-request-presigner (property)", async () => {
  const sdkCase = caseArb.chain((c) =>
    fc.record({
      c: fc.constant(c),
      bucket: sdkBucket,
      op: fc.constantFrom<Op>("GetObject", "HeadObject", "PutObject", "UploadPart"),
      part: fc.record({ partNumber: fc.integer({ min: 1, max: 10000 }), uploadId: base64ish(1, 60) }),
    }),
  );
  await fc.assert(
    fc.asyncProperty(sdkCase, async ({ c, bucket, op, part }) => {
      // The SDK turns "http://host/prefix/" + virtual host into "/prefix//key";
      // a prefix without trailing slash is unambiguous for both.
      const withBucket = { ...c, bucket, endpoint: c.endpoint.replace(/\/$/, "") };
      // For a dotted bucket on an http IP-address endpoint the SDK builds
      // "http://a.b.127.0.0.1:7480" and throws "Invalid URL"; we use path style.
      const ipEndpoint = isIP(new URL(withBucket.endpoint).hostname.replace(/^\[|\]$/g, "")) !== 0;
      fc.pre(!(ipEndpoint && bucket.includes(".") && !c.forcePathStyle));
      const p = op === "UploadPart" ? part : undefined;
      const want = await sdkSignedUrl(sdkClient(withBucket), op, withBucket, p);
      assert.equal(ours(asOurs(op, withBucket, p)), want);
    }),
    { numRuns: 150 },
  );
});

test("byte-identical to getSignedUrl for fixed cases, both path styles", async () => {
  const now = new Date("2024-05-06T07:08:09.123Z");
  const creds = { accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" };
  const sts = { ...creds, sessionToken: "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ+abc=" };
  const keys = [
    "checkpoints/run-1/step-000100/model.safetensors",
    "a b/c+d~e%f*(g)!'/é/日本/😀",
    "/leading//double-slash/trailing/",
    "./dot/../dotdot/.",
    "k=v&x=y?#frag",
  ];
  let compared = 0;
  const clients = new Map<string, S3Client>();
  const clientFor = (c: Case): S3Client => {
    const id = JSON.stringify([c.endpoint, c.region, c.forcePathStyle, c.credentials]);
    let client = clients.get(id);
    if (client === undefined) clients.set(id, (client = sdkClient(c)));
    return client;
  };
  for (const forcePathStyle of [false, true]) {
    for (const [endpoint, region] of [["https://s3.us-east-1.amazonaws.com", "us-east-1"], ["http://127.0.0.1:7480", "default"], ["https://minio.local:9443", "eu-west-3"]] as const) {
      for (const credentials of [creds, sts]) {
        for (const key of keys) {
          const c: Case = { method: "GET", endpoint, region, forcePathStyle, credentials, bucket: "ckpt-bucket", key, expires: 3600, now, query: {} };
          for (const op of ["GetObject", "PutObject", "HeadObject"] as const) {
            assert.equal(ours(asOurs(op, c)), await sdkSignedUrl(clientFor(c), op, c), `${op} ${endpoint} ${key}`);
            compared++;
          }
          const part = { partNumber: 7, uploadId: "2~Xy/Z+w==" };
          assert.equal(ours(asOurs("UploadPart", c, part)), await sdkSignedUrl(clientFor(c), "UploadPart", c, part));
          compared++;
        }
      }
    }
  }
  assert.equal(compared, 2 * 3 * 2 * keys.length * 4);

  // Spot-check the layout, so a shared mistake in both would still show.
  const url = new URL(ours({ method: "GET", endpoint: "https://s3.us-east-1.amazonaws.com", region: "us-east-1", forcePathStyle: false, credentials: sts, bucket: "ckpt-bucket", key: "a b/é", expires: 3600, now, query: {} }));
  assert.equal(url.host, "ckpt-bucket.s3.us-east-1.amazonaws.com");
  assert.equal(url.pathname, "/a%20b/%C3%A9");
  assert.deepEqual([...url.searchParams.keys()], [
    "X-Amz-Algorithm", "X-Amz-Content-Sha256", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
    "X-Amz-Security-Token", "X-Amz-Signature", "X-Amz-SignedHeaders",
  ]);
  assert.equal(url.searchParams.get("X-Amz-Credential"), "AKIAIOSFODNN7EXAMPLE/20240506/us-east-1/s3/aws4_request");
  assert.equal(url.searchParams.get("X-Amz-Date"), "20240506T070809Z");
  assert.equal(url.searchParams.get("X-Amz-Security-Token"), sts.sessionToken);
  assert.match(url.searchParams.get("X-Amz-Signature") ?? "", /^[0-9a-f]{64}$/);
});

test("default S3Client (checksum params on): x-amz-* extras pass through and still match", async () => {
  const now = new Date("2025-01-02T03:04:05Z");
  const c: Case = {
    method: "GET", endpoint: "http://localhost:9000", region: "us-east-1", forcePathStyle: true,
    credentials: { accessKeyId: "AKIAX", secretAccessKey: "secret" }, bucket: "b1x", key: "dir/file.bin",
    expires: 600, now, query: {},
  };
  const sdk = await getSignedUrl(sdkClient(c, false), new GetObjectCommand({ Bucket: c.bucket, Key: c.key }), { expiresIn: 600, signingDate: now });
  const extra = Object.fromEntries([...new URL(sdk).searchParams].filter(([k]) => !k.startsWith("X-Amz-")));
  assert.ok("x-id" in extra);
  assert.equal(ours({ ...c, query: extra }), sdk);
});

// ---------------------------------------------------------------- expiry clamp

const expiresOf = (url: string): number => Number(new URL(url).searchParams.get("X-Amz-Expires"));

function presignerWith(credentials: S3PresignCredentials): S3Presigner {
  return new S3Presigner({ endpoint: "http://127.0.0.1:7480", region: "us-east-1", forcePathStyle: true, credentials });
}

test("expiry is clamped to [1, 604800] seconds", async () => {
  const now = new Date("2024-01-01T00:00:00Z");
  const p = presignerWith({ accessKeyId: "AKIA", secretAccessKey: "s" });
  const at = (expiresInSeconds: number): string => p.presign({ method: "GET", bucket: "b", key: "k", expiresInSeconds, now });
  assert.equal(SIGV4_MAX_EXPIRES_SECONDS, 7 * 24 * 3600);
  assert.equal(expiresOf(at(604800)), 604800);
  assert.equal(expiresOf(at(604801)), 604800);
  assert.equal(expiresOf(at(1e12)), 604800);
  assert.equal(expiresOf(at(Number.MAX_SAFE_INTEGER)), 604800);
  assert.equal(expiresOf(at(1)), 1);
  assert.equal(expiresOf(at(0)), 1);
  assert.equal(expiresOf(at(-30)), 1);
  assert.equal(expiresOf(at(90.9)), 90);
  assert.throws(() => at(Number.NaN), RangeError);
  assert.throws(() => at(Number.POSITIVE_INFINITY), RangeError);
  // The clamped URL is still correctly signed for the clamped value.
  assert.equal(
    at(10_000_000),
    await smithyPresign({
      method: "GET", endpoint: "http://127.0.0.1:7480", region: "us-east-1", forcePathStyle: true,
      credentials: { accessKeyId: "AKIA", secretAccessKey: "s" }, bucket: "b", key: "k", expires: 604800, now, query: {},
    }),
  );
});

test("expiry never outlives session credentials", () => {
  const now = new Date("2024-01-01T00:00:00.000Z");
  // `now` is years before the wall clock: these pass only if the clamp
  // measures from the signing time.
  const inSeconds = (s: number): Date => new Date(now.getTime() + s * 1000);
  const url = (expiration: Date, expiresInSeconds: number): string =>
    presignerWith({ accessKeyId: "ASIA", secretAccessKey: "s", sessionToken: "t", expiration })
      .presign({ method: "PUT", bucket: "b", key: "k", expiresInSeconds, now });
  assert.equal(expiresOf(url(inSeconds(600), 3600)), 600); // credentials expire first
  assert.equal(expiresOf(url(inSeconds(600.9), 3600)), 600); // whole seconds, rounded down
  assert.equal(expiresOf(url(inSeconds(600), 300)), 300); // URL expires first
  assert.equal(expiresOf(url(inSeconds(30 * 86400), 1e9)), 604800); // both caps apply
  assert.equal(expiresOf(url(inSeconds(1), 3600)), 1);
  // Already expired (or less than a second left): refuse rather than mint dead URLs.
  assert.throws(() => url(inSeconds(0.5), 3600), /expired/);
  assert.throws(() => url(inSeconds(0), 3600), /expired/);
  assert.throws(() => url(inSeconds(-60), 3600), /expired/);
  // Without an expiration only the 7-day cap applies.
  const p = presignerWith({ accessKeyId: "ASIA", secretAccessKey: "s", sessionToken: "t" });
  assert.equal(expiresOf(p.presign({ method: "GET", bucket: "b", key: "k", expiresInSeconds: 86400, now })), 86400);
});

test("rejects query params that clash with the signing params, and empty names", () => {
  const p = presignerWith({ accessKeyId: "AKIA", secretAccessKey: "s" });
  const base = { method: "GET" as const, bucket: "b", key: "k", expiresInSeconds: 60 };
  for (const name of ["X-Amz-Signature", "x-amz-date", "X-AMZ-SECURITY-TOKEN", "X-Amz-Expires"]) {
    assert.throws(() => p.presign({ ...base, query: { [name]: "1" } }), /reserved/);
  }
  assert.doesNotThrow(() => p.presign({ ...base, query: { "x-amz-checksum-mode": "ENABLED" } }));
  assert.throws(() => p.presign({ ...base, key: "" }), /empty object key/);
  assert.throws(() => p.presign({ ...base, bucket: "" }), /empty bucket/);
});
