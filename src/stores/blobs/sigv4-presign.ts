/**
 * Hand-written AWS Signature V4 query-string presigner for S3 object URLs.
 *
 * Why not @aws-sdk/s3-request-presigner: `getSignedUrl` runs the whole client
 * middleware stack (endpoint rules, serializers, async providers) for every
 * URL, which manages a few thousand URLs/s at best. A checkpoint listing can
 * need tens of thousands of URLs at once, and all that changes between two
 * URLs for one bucket is the key, the method and the clock, so the canonical
 * request is assembled here directly.
 *
 * The URL is byte-identical to the SDK's for the same request (same host and
 * path choice, query parameters, order and encoding; pass the SDK's `x-id`
 * operation marker in `query` to reproduce it exactly). The test
 * test/stores/sigv4-presign.test.ts checks this against @smithy/signature-v4
 * and against getSignedUrl.
 *
 * Reference: https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
 */
import { createHash, createHmac } from "node:crypto";
// Namespace import: a named import of `hash` would fail to link on Node
// releases that lack it.
import * as nodeCrypto from "node:crypto";
import { isIP } from "node:net";

/** SigV4 presigned URLs cannot be valid for more than 7 days. */
export const SIGV4_MAX_EXPIRES_SECONDS = 604800;

export interface S3PresignCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** When temporary credentials stop being valid; caps the URL lifetime. */
  expiration?: Date;
}

export interface S3PresignerOptions {
  /** e.g. "https://s3.us-east-1.amazonaws.com" or "http://127.0.0.1:7480" (a path prefix is kept). */
  endpoint: string;
  region: string;
  forcePathStyle: boolean;
  credentials: S3PresignCredentials;
  /** Signing name; "s3" unless the store speaks SigV4 under another name. */
  service?: string;
}

export interface S3PresignInput {
  method: "GET" | "PUT" | "HEAD";
  bucket: string;
  key: string;
  expiresInSeconds: number;
  /** Signing time; defaults to the current time. */
  now?: Date;
  /** Extra signed query parameters (raw, unencoded), e.g. partNumber + uploadId for UploadPart. */
  query?: Record<string, string>;
}

const ALGORITHM = "AWS4-HMAC-SHA256";
// Presigned URLs never sign the body: the uploader's bytes are not known yet.
const UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD";
// Signing keys are cached by date: normally today's alone, plus yesterday's
// around midnight. Callers passing arbitrary `now` values could grow the map,
// so it is simply emptied past this size; no LRU bookkeeping needed.
const MAX_CACHED_DAYS = 8;

// One-shot crypto.hash (Node >= 20.12) skips creating a Hash object per call;
// createHash is the fallback for older Node 20 releases.
const sha256Hex: (data: string) => string =
  typeof nodeCrypto.hash === "function"
    ? (data) => nodeCrypto.hash("sha256", data, "hex")
    : (data) => createHash("sha256").update(data, "utf8").digest("hex");

// encodeURIComponent escapes everything outside the RFC 3986 unreserved set
// except these five, which SigV4 (and the SDK's escapeUri) escape too.
const SUB_DELIMS = /[!'()*]/g;
const HAS_SUB_DELIMS = /[!'()*]/;
const escapeSubDelim = (c: string): string => `%${c.charCodeAt(0).toString(16).toUpperCase()}`;

/**
 * RFC 3986 percent-encoding as SigV4 wants it: unreserved `A-Za-z0-9-._~`
 * kept, everything else as UTF-8 bytes in uppercase hex. Throws URIError on
 * lone surrogates (such a string has no UTF-8 form; the SDK throws too).
 */
function uriEscape(value: string): string {
  const encoded = encodeURIComponent(value);
  return HAS_SUB_DELIMS.test(encoded) ? encoded.replace(SUB_DELIMS, escapeSubDelim) : encoded;
}

/**
 * Object key -> URL path: each segment escaped, `/` kept. This is also the
 * canonical URI, because S3 signs the path as sent (no second encoding pass
 * and no `.`/`..`/`//` normalisation, unlike other services). "%2F" can only
 * come from a `/`: a literal "%2F" in the key is encoded as "%252F".
 * Caveat (shared with the SDK): `.` and `..` segments are left as they are,
 * and WHATWG URL parsers (fetch, browsers) collapse them before sending, so
 * such keys give URLs whose signature will not match.
 */
export function uriEscapeKey(key: string): string {
  return uriEscape(key).replaceAll("%2F", "/");
}

/** ISO 8601 basic format, "20240131T235959Z" (SigV4 drops the milliseconds). */
function amzDate(now: Date): string {
  const iso = now.toISOString(); // "2024-01-31T23:59:59.123Z"
  return (
    iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 10) + "T" +
    iso.slice(11, 13) + iso.slice(14, 16) + iso.slice(17, 19) + "Z"
  );
}

// Which buckets can be virtual hosts, by the SDK's rules (so our URLs match
// its URLs): a lowercase DNS label of 3..63 chars. Over plain http a dotted
// name also works if every label qualifies; over https it would not match
// the wildcard TLS certificate (`*.s3.amazonaws.com` covers one label only),
// so dotted buckets use path style there.
const BUCKET_LABEL = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;
function isVirtualHostable(bucket: string, allowDots: boolean): boolean {
  if (BUCKET_LABEL.test(bucket)) return true;
  return allowDots && bucket.split(".").every((label) => BUCKET_LABEL.test(label));
}

/** Everything derived from (credentials, date): recomputed once a day. */
interface DayKey {
  accessKeyId: string;
  secretAccessKey: string;
  signingKey: Buffer;
  scope: string;
  /** Escaped X-Amz-Credential value. */
  credential: string;
}

/** The parameters the presigner sets itself, lowercased. */
const RESERVED_PARAMS = new Set(
  [
    "X-Amz-Algorithm", "X-Amz-Content-Sha256", "X-Amz-Credential", "X-Amz-Date",
    "X-Amz-Expires", "X-Amz-Security-Token", "X-Amz-Signature", "X-Amz-SignedHeaders",
  ].map((name) => name.toLowerCase()),
);

/** A query parameter: its unescaped and escaped names, and the escaped `name=value`. */
interface Param {
  raw: string;
  escaped: string;
  pair: string;
}

/** Caller-supplied query parameters, escaped. */
function extraParams(query: Record<string, string>): Param[] {
  const out: Param[] = [];
  for (const raw of Object.keys(query)) {
    // A caller-supplied X-Amz-Date or X-Amz-Signature would clash with ours
    // and break the URL. (Other x-amz-* parameters, e.g. x-amz-checksum-mode,
    // are fine.)
    if (RESERVED_PARAMS.has(raw.toLowerCase())) throw new Error(`S3 presign: query parameter ${raw} is reserved`);
    const escaped = uriEscape(raw);
    out.push({ raw, escaped, pair: `${escaped}=${uriEscape(query[raw] as string)}` });
  }
  return out;
}

/** Our own `Name=value` pairs as Params (their names need no escaping). */
function named(pairs: string[]): Param[] {
  return pairs.map((pair) => {
    const name = pair.slice(0, pair.indexOf("="));
    return { raw: name, escaped: name, pair };
  });
}

/** Joined query string, sorted by UTF-16 code units of the chosen name (Array#sort's default order, the SDK's). */
function sortedQuery(params: Param[], by: "raw" | "escaped"): string {
  params.sort((a, b) => (a[by] < b[by] ? -1 : a[by] > b[by] ? 1 : 0));
  return params.map((p) => p.pair).join("&");
}

export class S3Presigner {
  private readonly protocol: string;
  /** Endpoint host, with the port when it is not the scheme's default. */
  private readonly host: string;
  private readonly hostIsIp: boolean;
  /** Endpoint path prefix without trailing slash ("" for most endpoints). */
  private readonly basePath: string;
  private readonly region: string;
  private readonly service: string;
  private readonly forcePathStyle: boolean;
  private credentials: S3PresignCredentials;
  /** Signing keys by yyyymmdd. */
  private readonly dayKeys = new Map<string, DayKey>();
  private lastSecond = Number.NaN;
  private lastLongDate = "";
  private lastToken: string | undefined;
  private lastTokenEscaped = "";

  constructor(opts: S3PresignerOptions) {
    const url = new URL(opts.endpoint);
    this.protocol = url.protocol;
    // URL.host already omits a default port (":443" on https, ":80" on http),
    // matching the Host header a client sends and the SDK signs.
    this.host = url.host;
    this.hostIsIp = isIP(url.hostname.replace(/^\[|\]$/g, "")) !== 0;
    this.basePath = url.pathname.replace(/\/+$/, "");
    this.region = opts.region;
    this.service = opts.service ?? "s3";
    this.forcePathStyle = opts.forcePathStyle;
    this.credentials = opts.credentials;
  }

  /** Swap in refreshed (e.g. rotated STS) credentials. */
  setCredentials(credentials: S3PresignCredentials): void {
    this.credentials = credentials;
  }

  /**
   * The effective X-Amz-Expires: the request clamped to [1, 604800] seconds,
   * and also to the time left on temporary credentials, because S3 rejects a
   * request whose session token has expired even if the URL itself has not:
   * a URL cannot outlive the session credentials that signed it, so promising
   * more would hand out links that die early. Throws if the credentials have
   * already expired (every URL would be dead on arrival; refresh them).
   */
  effectiveExpiresSeconds(requested: number, now: Date): number {
    if (!Number.isFinite(requested)) throw new RangeError(`expiresInSeconds must be finite, got ${requested}`);
    let seconds = Math.min(Math.floor(requested), SIGV4_MAX_EXPIRES_SECONDS);
    const expiration = this.credentials.expiration;
    if (expiration !== undefined) {
      const left = Math.floor((expiration.getTime() - now.getTime()) / 1000);
      if (!(left >= 1)) throw new Error("S3 presign: credentials have expired (or expire within a second)");
      seconds = Math.min(seconds, left);
    }
    return Math.max(1, seconds);
  }

  presign(input: S3PresignInput): string {
    const { method, bucket, key } = input;
    if (bucket === "") throw new Error("S3 presign: empty bucket name");
    if (key === "") throw new Error("S3 presign: empty object key");
    const now = input.now ?? new Date();
    if (Number.isNaN(now.getTime())) throw new RangeError("S3 presign: invalid signing date");
    const expires = this.effectiveExpiresSeconds(input.expiresInSeconds, now);
    const longDate = this.amzDate(now);
    const credentials = this.credentials;
    const day = this.dayKey(longDate.slice(0, 8), credentials);

    let host: string;
    let path: string;
    // An IP-address endpoint has no DNS to resolve bucket subdomains.
    if (!this.forcePathStyle && !this.hostIsIp && isVirtualHostable(bucket, this.protocol === "http:")) {
      host = `${bucket}.${this.host}`;
      path = `${this.basePath}/${uriEscapeKey(key)}`;
    } else {
      host = this.host;
      path = `${this.basePath}/${uriEscape(bucket)}/${uriEscapeKey(key)}`;
    }

    // Escaped `Name=value` pairs, listed in canonical (sorted) order.
    // X-Amz-Content-Sha256 is not required by S3 in a presigned URL, but the
    // SDK hoists it there and keeping it makes our URLs byte-identical to the
    // SDK's.
    const signing = [
      "X-Amz-Algorithm=" + ALGORITHM,
      "X-Amz-Content-Sha256=" + UNSIGNED_PAYLOAD,
      "X-Amz-Credential=" + day.credential,
      "X-Amz-Date=" + longDate,
      "X-Amz-Expires=" + expires,
    ];
    if (credentials.sessionToken) signing.push("X-Amz-Security-Token=" + this.escapedToken(credentials.sessionToken));
    signing.push("X-Amz-SignedHeaders=host");
    const extra = input.query === undefined ? [] : extraParams(input.query);

    // The canonical query string is sorted by escaped name.
    const canonicalQuery = extra.length === 0 ? signing.join("&") : sortedQuery(named(signing).concat(extra), "escaped");
    // Only `host` is signed: presigned URLs are fetched by arbitrary clients
    // that cannot be trusted to send any other header verbatim.
    const canonicalRequest =
      `${method}\n${path}\n${canonicalQuery}\nhost:${host}\n\nhost\n${UNSIGNED_PAYLOAD}`;
    const stringToSign = `${ALGORITHM}\n${longDate}\n${day.scope}\n${sha256Hex(canonicalRequest)}`;
    const signature = createHmac("sha256", day.signingKey).update(stringToSign, "utf8").digest("hex");

    // The URL carries the same pairs plus the signature, sorted the way the
    // SDK's formatUrl sorts them: by unescaped name. (That differs from the
    // canonical order only if a caller's parameter name needs escaping.)
    signing.push("X-Amz-Signature=" + signature);
    let query: string;
    if (extra.length === 0) {
      // "X-Amz-Signa..." < "X-Amz-Signe...": swap it before SignedHeaders.
      const last = signing.length - 1;
      [signing[last - 1], signing[last]] = [signing[last] as string, signing[last - 1] as string];
      query = signing.join("&");
    } else {
      query = sortedQuery(named(signing).concat(extra), "raw");
    }
    return `${this.protocol}//${host}${path}?${query}`;
  }

  /** amzDate(now), reused within the same second: a batch of URLs shares one. */
  private amzDate(now: Date): string {
    const second = Math.floor(now.getTime() / 1000);
    if (second !== this.lastSecond) {
      this.lastLongDate = amzDate(now);
      this.lastSecond = second;
    }
    return this.lastLongDate;
  }

  /** STS tokens run to ~1 kB: escape each one once, not once per URL. */
  private escapedToken(sessionToken: string): string {
    if (sessionToken !== this.lastToken) {
      this.lastTokenEscaped = uriEscape(sessionToken);
      this.lastToken = sessionToken;
    }
    return this.lastTokenEscaped;
  }

  /**
   * kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
   * Four HMACs per URL would dominate the cost, and the result only changes
   * with the date or the credentials, so it is cached by date and checked
   * against the credentials in use (they may have been rotated since, by
   * setCredentials or by mutating the object). Region and service are fixed
   * per presigner.
   */
  private dayKey(shortDate: string, { accessKeyId, secretAccessKey }: S3PresignCredentials): DayKey {
    const cached = this.dayKeys.get(shortDate);
    if (cached !== undefined && cached.secretAccessKey === secretAccessKey && cached.accessKeyId === accessKeyId) {
      return cached;
    }
    const scope = `${shortDate}/${this.region}/${this.service}/aws4_request`;
    let signingKey = createHmac("sha256", "AWS4" + secretAccessKey).update(shortDate).digest();
    signingKey = createHmac("sha256", signingKey).update(this.region, "utf8").digest();
    signingKey = createHmac("sha256", signingKey).update(this.service, "utf8").digest();
    signingKey = createHmac("sha256", signingKey).update("aws4_request").digest();
    const day = { accessKeyId, secretAccessKey, signingKey, scope, credential: uriEscape(`${accessKeyId}/${scope}`) };
    if (this.dayKeys.size >= MAX_CACHED_DAYS) this.dayKeys.clear();
    this.dayKeys.set(shortDate, day);
    return day;
  }
}
