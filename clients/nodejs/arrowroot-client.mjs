#!/usr/bin/env node
// arrowroot Node.js client: talks Arrow Flight over plain gRPC (@grpc/grpc-js + a .proto file)
// and decodes the Arrow IPC data with apache-arrow. No Arrow Flight library is involved: this is
// what any language with a gRPC stack and an Arrow IPC reader has to do.
//
//   node arrowroot-client.mjs grpc://127.0.0.1:8815 \
//     '{"dataset": "hep/events.root:events", "columns": ["nMuon", "Muon_pt"], "entryStart": "100", "entryStop": "2100"}'
//
// Output (stdout), one JSON object per line:
//   {"datasets": [{"name": ..., "path": [...], "total_records": N}, ...]}          (ListFlights)
//   {"dataset": ..., "total_records": N, "endpoints": E, "batches": B, "rows": N,
//    "columns": [...], "types": {col: arrow type}, "first": {col: row-0 value},
//    "sum": {col: sum}, "list_lengths": {col: total list elements}}                   (the read)
// "sum" covers integer and floating-point columns; for list columns it is the sum of all their
// elements. 64-bit integers are printed as JSON numbers while exact, else as decimal strings;
// NaN and infinities as the strings "NaN", "Infinity", "-Infinity".
// Errors go to stderr; a gRPC error prints its status name, code and message and exits with 1.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import zlib from 'node:zlib';
import { RecordBatchReader, Message, DataType, Type, Precision, makeVector, compressionRegistry, CompressionType } from 'apache-arrow';
import { decompress as zstdDecompress } from 'fzstd';
import lz4 from 'lz4js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROTO = path.join(HERE, '..', '..', 'protos', 'flight.proto');  // the one Flight.proto of the project
const REUSE_CONNECTION = 'arrow-flight-reuse-connection:'; // any URI of this scheme: the same connection
const CONTINUATION = 0xffffffff;

// Servers may compress IPC bodies (arrowroot: `serve --compression lz4|zstd`). apache-arrow decodes
// compressed batches once a codec is registered; both codecs here are pure JS (zstd is Node's own
// where it has one).
// apache-arrow views decoded buffers as typed arrays in place: hand it 8-byte-aligned memory.
const aligned = (u8) => (u8.byteOffset % 8 === 0 ? u8 : u8.slice());
compressionRegistry.set(CompressionType.LZ4_FRAME, {
  decode: (bytes) => {
    const out = lz4.decompress(bytes);
    return aligned(out instanceof Uint8Array ? out : Uint8Array.from(out));
  },
});
compressionRegistry.set(CompressionType.ZSTD, {
  decode: typeof zlib.zstdDecompressSync === 'function'
    ? (bytes) => aligned(new Uint8Array(zlib.zstdDecompressSync(bytes)))
    : (bytes) => aligned(zstdDecompress(bytes)),
});

const USAGE = `usage: arrowroot-client.mjs [options] LOCATION [READ_REQUEST_JSON | @FILE | -]

LOCATION           grpc://HOST:PORT, grpc+tcp://HOST:PORT or grpc+tls://HOST:PORT
READ_REQUEST_JSON  an arrowroot.v1.ReadRequest as JSON, e.g.
                   '{"dataset": "hep/events.root:events", "columns": ["nMuon"], "entryStop": "1000"}'
                   (@FILE reads it from a file, - from stdin; omitted = only list the datasets)

options:
  --no-list           skip ListFlights
  --actions           also print the server's actions (ListActions)
  --header K=V        add gRPC metadata to every call (repeatable), e.g. "authorization=Bearer T"
  --timeout SECONDS   deadline of each call (default 300; 0 = none)
  --tls-roots FILE    PEM root certificates for grpc+tls (default: the system's)
  -h, --help          this text`;

class UsageError extends Error {}

function parseArgs(argv) {
  const opts = { list: true, actions: false, headers: [], timeout: 300, tlsRoots: null, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '-h' || a === '--help') opts.help = true;
    else if (a === '--no-list') opts.list = false;
    else if (a === '--actions') opts.actions = true;
    else if (a === '--header') {
      const kv = value();
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new UsageError(`--header wants KEY=VALUE, got ${JSON.stringify(kv)}`);
      opts.headers.push([kv.slice(0, eq).trim().toLowerCase(), kv.slice(eq + 1)]);
    } else if (a === '--timeout') {
      opts.timeout = Number(value());
      if (!Number.isFinite(opts.timeout) || opts.timeout < 0) throw new UsageError('--timeout wants seconds >= 0');
    } else if (a === '--tls-roots') opts.tlsRoots = value();
    else if (a.startsWith('--')) throw new UsageError(`unknown option ${a}`);
    else opts.positional.push(a);
  }
  if (opts.help) return opts;
  if (opts.positional.length < 1 || opts.positional.length > 2) throw new UsageError('expected LOCATION and an optional READ_REQUEST_JSON');
  return opts;
}

function readRequestText(arg) {
  if (arg === '-') return readFileSync(0, 'utf8');
  if (arg.startsWith('@')) return readFileSync(arg.slice(1), 'utf8');
  return arg;
}

// ---------------------------------------------------------------- gRPC plumbing

const packageDefinition = protoLoader.loadSync(PROTO, {
  keepCase: true,   // field names as in Flight.proto (total_records, data_header, ...)
  longs: String,    // int64 as decimal strings: exact, converted where printed
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
});
const { FlightService } = grpc.loadPackageDefinition(packageDefinition).arrow.flight.protocol;

function parseLocation(uri) {
  let u;
  try {
    u = new URL(uri);
  } catch {
    throw new UsageError(`not a location: ${JSON.stringify(uri)} (want grpc://HOST:PORT)`);
  }
  const scheme = u.protocol.replace(/:$/, '');
  if (!['grpc', 'grpc+tcp', 'grpc+tls'].includes(scheme)) {
    throw new UsageError(`unsupported location scheme ${JSON.stringify(scheme)} (grpc, grpc+tcp or grpc+tls)`);
  }
  if (!u.hostname || !u.port) throw new UsageError(`location needs HOST:PORT: ${JSON.stringify(uri)}`);
  return { target: `${u.hostname}:${u.port}`, tls: scheme === 'grpc+tls' };
}

function makeClient(location, opts) {
  const { target, tls } = parseLocation(location);
  const creds = tls
    ? grpc.credentials.createSsl(opts.tlsRoots ? readFileSync(opts.tlsRoots) : null)
    : grpc.credentials.createInsecure();
  return new FlightService(target, creds, {
    // record batches are capped at ~8 MiB by the server; never cap what we accept
    'grpc.max_receive_message_length': -1,
  });
}

function callOptions(opts) {
  return opts.timeout > 0 ? { deadline: new Date(Date.now() + opts.timeout * 1000) } : {};
}

function metadata(opts) {
  const md = new grpc.Metadata();
  for (const [k, v] of opts.headers) md.add(k, v);
  return md;
}

/** Carries which RPC failed alongside the gRPC status. */
class RpcError extends Error {
  constructor(rpc, err) {
    super(err.details || err.message);
    this.rpc = rpc;
    this.code = err.code;
  }
}

function unary(client, rpc, request, opts) {
  return new Promise((resolve, reject) => {
    client[rpc](request, metadata(opts), callOptions(opts), (err, response) => {
      if (err) reject(new RpcError(rpc, err));
      else resolve(response);
    });
  });
}

/** A server-streaming call as an async iterable that throws RpcError on a failed status. */
async function* serverStream(client, rpc, request, opts) {
  const call = client[rpc](request, metadata(opts), callOptions(opts));
  try {
    for await (const message of call) yield message;
  } catch (err) {
    throw err.code !== undefined ? new RpcError(rpc, err) : err;
  } finally {
    call.cancel(); // no-op when the stream has ended; stops it when the consumer gave up early
  }
}

async function collect(iterable) {
  const out = [];
  for await (const x of iterable) out.push(x);
  return out;
}

// ---------------------------------------------------------------- Arrow IPC from FlightData

function pad8(n) {
  return (n + 7) & ~7;
}

/**
 * One FlightData -> one encapsulated IPC stream message:
 *   0xFFFFFFFF | int32 LE metadata length (padded so the body starts 8-byte aligned) |
 *   flatbuffer Message (data_header) + zero padding | body (data_body, bodyLength bytes)
 */
function frameMessage(header, body) {
  const metaLen = pad8(8 + header.length) - 8;
  // The header states the body length; honour it exactly even if a sender padded differently.
  const bodyLen = Number(Message.decode(header).bodyLength);
  const out = Buffer.alloc(8 + metaLen + bodyLen);
  out.writeUInt32LE(CONTINUATION, 0);
  out.writeInt32LE(metaLen, 4);
  header.copy(out, 8);
  body.copy(out, 8 + metaLen, 0, Math.min(body.length, bodyLen));
  return out;
}

const END_OF_STREAM = Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);

/** DoGet's FlightData stream as the bytes of an Arrow IPC stream. */
async function* ipcStreamBytes(flightData) {
  for await (const fd of flightData) {
    if (!fd.data_header || fd.data_header.length === 0) continue; // app_metadata-only message
    yield frameMessage(fd.data_header, fd.data_body || Buffer.alloc(0));
  }
  yield END_OF_STREAM;
}

/** The Schema in FlightInfo.schema (an encapsulated IPC message), or null. */
function schemaFromFlightInfo(info) {
  const bytes = info.schema;
  if (!bytes || bytes.length === 0) return null;
  let reader;
  try {
    reader = RecordBatchReader.from(Buffer.concat([bytes, END_OF_STREAM]));
    reader.open();
  } catch {
    return null;
  }
  return reader.schema ?? null;
}

// ---------------------------------------------------------------- summarising the rows

function jsonInt(v) {
  if (typeof v === 'bigint') {
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  }
  return v;
}

/** An Arrow value as plain JSON: lists -> arrays, structs/maps -> objects, bytes -> base64. */
function toJSONValue(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return jsonInt(v);
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (v instanceof Date) return v.toISOString();
  if (typeof v.toArray === 'function' && typeof v.length === 'number' && 'type' in v) {
    // a Vector: a list cell
    const out = [];
    for (let i = 0; i < v.length; i++) out.push(toJSONValue(v.get(i)));
    return out;
  }
  if (ArrayBuffer.isView(v) || Array.isArray(v)) return Array.from(v, toJSONValue);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [String(k), toJSONValue(x)]));
  if (typeof v.toJSON === 'function') {
    const o = v.toJSON();
    if (o && typeof o === 'object') return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, toJSONValue(x)]));
    return o;
  }
  return String(v);
}

// Numeric types whose Data.values typed array holds the values one per slot (Float16 does not).
function isPlainNumeric(type) {
  return DataType.isInt(type) || (DataType.isFloat(type) && type.precision !== Precision.HALF);
}

function isNumeric(type) {
  return DataType.isInt(type) || DataType.isFloat(type);
}

function isListLike(type) {
  return DataType.isList(type) || DataType.isFixedSizeList(type) || type.typeId === Type.LargeList;
}

/**
 * Running sum of the valid values at [begin, end) of a primitive Data chunk. Data.values and the
 * validity lookup are already relative to the chunk's own offset, so indices are logical.
 */
function sumPrimitive(data, begin, end, acc) {
  const bigint = typeof acc === 'bigint';
  const checkNulls = data.nullCount !== 0;
  if (isPlainNumeric(data.type) && data.values) {
    const vals = data.values;
    for (let i = begin; i < end; i++) {
      if (checkNulls && !data.getValid(i)) continue;
      acc += bigint ? BigInt(vals[i]) : Number(vals[i]);
    }
    return acc;
  }
  const vector = makeVector(data); // Float16 and friends: let apache-arrow decode each value
  for (let i = begin; i < end; i++) {
    const x = vector.get(i);
    if (x === null) continue;
    acc += bigint ? BigInt(x) : Number(x);
  }
  return acc;
}

class Summary {
  constructor() {
    this.schema = null;
    this.rows = 0;
    this.batches = 0;
    this.first = null;
    this.sums = new Map();        // column -> number | bigint
    this.listLengths = new Map(); // column -> total elements
  }

  setSchema(schema) {
    if (!this.schema) {
      this.schema = schema;
      for (const f of schema.fields) {
        const elem = isListLike(f.type) ? f.type.children[0].type : f.type;
        if (isNumeric(elem)) this.sums.set(f.name, DataType.isInt(elem) && elem.bitWidth === 64 ? 0n : 0);
        if (isListLike(f.type)) this.listLengths.set(f.name, 0);
      }
      return;
    }
    const a = this.schema.fields.map((f) => `${f.name}: ${f.type}`).join(', ');
    const b = schema.fields.map((f) => `${f.name}: ${f.type}`).join(', ');
    if (a !== b) throw new Error(`endpoint streams disagree on the schema: [${a}] vs [${b}]`);
  }

  addBatch(batch) {
    this.batches++;
    if (batch.numRows === 0) return;
    if (this.first === null) {
      this.first = {};
      this.schema.fields.forEach((f, idx) => {
        this.first[f.name] = toJSONValue(batch.getChildAt(idx).get(0));
      });
    }
    this.rows += batch.numRows;
    this.schema.fields.forEach((f, idx) => {
      const data = batch.data.children[idx];
      if (isListLike(f.type)) {
        this.addList(f.name, batch.getChildAt(idx), data);
      } else if (this.sums.has(f.name)) {
        this.sums.set(f.name, sumPrimitive(data, 0, data.length, this.sums.get(f.name)));
      }
    });
  }

  addList(name, vector, data) {
    const child = data.children[0];
    const summing = this.sums.has(name);
    if (DataType.isFixedSizeList(data.type)) {
      const size = data.type.listSize;
      let n = 0;
      let acc = summing ? this.sums.get(name) : 0;
      for (let i = 0; i < data.length; i++) {
        if (!data.getValid(i)) continue;
        n += size;
        if (summing) acc = sumPrimitive(child, i * size, (i + 1) * size, acc);
      }
      this.listLengths.set(name, this.listLengths.get(name) + n);
      if (summing) this.sums.set(name, acc);
      return;
    }
    const offsets = data.valueOffsets; // length + 1 entries, indexing the (unsliced) child
    let n = 0;
    let acc = summing ? this.sums.get(name) : 0;
    for (let i = 0; i < data.length; i++) {
      if (!data.getValid(i)) continue;
      const begin = Number(offsets[i]);
      const end = Number(offsets[i + 1]);
      n += end - begin;
      if (summing) acc = sumPrimitive(child, begin, end, acc);
    }
    this.listLengths.set(name, this.listLengths.get(name) + n);
    if (summing) this.sums.set(name, acc);
  }

  toJSON(extra) {
    const fields = this.schema ? this.schema.fields : [];
    return {
      ...extra,
      batches: this.batches,
      rows: this.rows,
      columns: fields.map((f) => f.name),
      types: Object.fromEntries(fields.map((f) => [f.name, String(f.type)])),
      first: this.first ?? {},
      sum: Object.fromEntries([...this.sums].map(([k, v]) => [k, toJSONValue(v)])),
      list_lengths: Object.fromEntries(this.listLengths),
    };
  }
}

// ---------------------------------------------------------------- the three steps

function descriptorName(desc) {
  if (!desc) return null;
  if (desc.type === 'PATH') return desc.path.join('/');
  if (desc.type === 'CMD') return desc.cmd.toString('utf8');
  return null;
}

async function listDatasets(client, opts) {
  const infos = await collect(serverStream(client, 'ListFlights', { expression: Buffer.alloc(0) }, opts));
  return {
    datasets: infos.map((info) => ({
      name: descriptorName(info.flight_descriptor),
      path: info.flight_descriptor ? info.flight_descriptor.path : [],
      total_records: jsonInt(BigInt(info.total_records)),
    })),
  };
}

async function listActions(client, opts) {
  const actions = await collect(serverStream(client, 'ListActions', {}, opts));
  return { actions: actions.map((a) => ({ type: a.type, description: a.description })) };
}

/** The client to redeem an endpoint on: this one unless the endpoint names other locations. */
function endpointClient(client, endpoint, opts, extraClients) {
  // The first location is the preferred one (arrowroot orders them by cache affinity).
  const uri = ((endpoint.location || [])[0] || { uri: '' }).uri;
  if (uri === '' || uri.startsWith(REUSE_CONNECTION)) return client;
  if (!extraClients.has(uri)) extraClients.set(uri, makeClient(uri, opts));
  return extraClients.get(uri);
}

function parseRequest(text) {
  let request;
  try {
    request = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`READ_REQUEST_JSON is not JSON: ${e.message}`);
  }
  if (!request || typeof request !== 'object' || Array.isArray(request)) {
    throw new UsageError('READ_REQUEST_JSON must be a JSON object (an arrowroot.v1.ReadRequest)');
  }
  // Sent as written (not re-serialised), so int64 values beyond 2**53 stay exact.
  return { request, text: text.trim() };
}

async function read(client, { request, text }, opts) {
  const descriptor = { type: 'CMD', cmd: Buffer.from(text, 'utf8'), path: [] };
  const info = await unary(client, 'GetFlightInfo', descriptor, opts);

  const summary = new Summary();
  const announced = schemaFromFlightInfo(info);
  const extraClients = new Map();
  try {
    for (const endpoint of info.endpoint) {
      const target = endpointClient(client, endpoint, opts, extraClients);
      const flightData = serverStream(target, 'DoGet', endpoint.ticket || { ticket: Buffer.alloc(0) }, opts);
      const reader = await RecordBatchReader.from(ipcStreamBytes(flightData));
      await reader.open();
      if (reader.schema) summary.setSchema(reader.schema);
      for await (const batch of reader) summary.addBatch(batch);
    }
  } finally {
    for (const c of extraClients.values()) c.close();
  }
  if (!summary.schema && announced) summary.setSchema(announced);
  return summary.toJSON({
    dataset: request.dataset ?? null,
    total_records: jsonInt(BigInt(info.total_records)),
    endpoints: info.endpoint.length,
  });
}

async function main(argv) {
  const opts = parseArgs(argv);
  if (opts.help) {
    console.log(USAGE);
    return 0;
  }
  const [location, requestArg] = opts.positional;
  const request = requestArg === undefined ? null : parseRequest(readRequestText(requestArg));
  const client = makeClient(location, opts);
  try {
    if (opts.list) console.log(JSON.stringify(await listDatasets(client, opts)));
    if (opts.actions) console.log(JSON.stringify(await listActions(client, opts)));
    if (request !== null) console.log(JSON.stringify(await read(client, request, opts)));
  } finally {
    client.close();
  }
  return 0;
}

const statusName = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    if (err instanceof UsageError) {
      console.error(`error: ${err.message}\n\n${USAGE}`);
      process.exitCode = 2;
    } else if (err instanceof RpcError) {
      console.error(`error: ${err.rpc} failed: ${statusName[err.code] ?? 'UNKNOWN'} (${err.code}): ${err.message}`);
      process.exitCode = 1;
    } else {
      console.error(`error: ${err && err.stack ? err.stack : err}`);
      process.exitCode = 1;
    }
  },
);
