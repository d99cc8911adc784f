// Sandflow JavaScript worker: the actor SDK shim (docs/worker-protocol.md, docs/actors.md).
//
// Started as `node -e <this file> [timeline] <channel fd>` with a cleared environment. It speaks
// length-prefixed JSON frames with the host over the inherited channel descriptor; the
// script's console output goes to stdout/stderr, which the host captures as log lines.
//
// The channel is read on Node's event loop (epoll), not with a blocking readSync(): a task
// blocked in read() on a unix socket is also woken, for nothing, whenever the host takes
// in what it wrote, which cost two context switches per call. Writes stay synchronous, so
// an output has reached the channel when sendOutput() returns. Between calls the event
// loop runs, timers a script left running included.
'use strict';

// With `timeline` before the descriptor (sandbox_bench --timeline) the hello, loaded and
// result frames carry CLOCK_MONOTONIC readings (uv_hrtime) of this worker's steps
// (sandbox::StartTimeline).
const clock = process.argv.slice(1, -1).includes('timeline') ? () => Number(process.hrtime.bigint()) : null;
const T_UP = clock && clock();
let tReceived = 0; // when the frame being handled arrived (with `timeline`)

const fs = require('fs');
const net = require('net');
const vm = require('vm');
const path = require('path');
const { createRequire } = require('module');

const PROTOCOL_VERSION = 1;
const MAX_FRAME_BYTES = 16 << 20; // limits::kMaxFrameBytes on the host
const MAX_TRACEBACK_FRAMES = 64;  // limits::kMaxTracebackFrames
const FD = Number(process.argv[process.argv.length - 1]);
if (FD === 0) {
    // A sandbox that hands its worker only the standard descriptors (gvisor) gives the
    // channel as stdin. Node cannot move a descriptor, so process.stdin becomes an empty
    // stream, as /dev/null is on every other backend: a script that reads stdin finds it
    // empty instead of taking the protocol's bytes.
    const { Readable } = require('stream');
    const empty = new Readable({ read() { this.push(null); } });
    Object.defineProperty(process, 'stdin', { configurable: true, enumerable: true, get: () => empty });
}

// ----- JSON codec: plain JSON plus {"$bytes": base64} for bytes (docs/values.md) -----

function reviveBytes(key, value) {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
        const keys = Object.keys(value);
        if (keys.length === 1 && keys[0] === '$bytes' && typeof value.$bytes === 'string') {
            return Buffer.from(value.$bytes, 'base64');
        }
    }
    return value;
}

function decode(text) {
    return text.includes('"$bytes"') ? JSON.parse(text, reviveBytes) : JSON.parse(text);
}

function replaceBytes(key, value) {
    const original = this[key];
    if (original instanceof Uint8Array) {
        return { $bytes: Buffer.from(original.buffer, original.byteOffset, original.byteLength).toString('base64') };
    }
    if (typeof value === 'bigint') {
        throw new TypeError('BigInt is not JSON serializable: convert it to a Number or a String');
    }
    return value;
}

function encode(value) {
    const text = JSON.stringify(value, replaceBytes);
    return text === undefined ? 'null' : text;
}

// ----- frames -----

// Received bytes are kept as chunks and joined once `need` bytes are there (a whole
// header, then a whole frame), so a large frame is copied once. Whole frames wait in
// `frames`; `readError` ends the stream (a frame over the limit, or the channel failing);
// `ended`: the host closed it.
let chunks = [];
let buffered = 0;
let need = 4;
const frames = [];
let readError = null;
let ended = false;
let wake = null;
let channel = null;

function onData(chunk) {
    chunks.push(chunk);
    buffered += chunk.length;
    if (buffered >= need) splitFrames();
    if (wake) wake();
}

function splitFrames() {
    let buf = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, buffered);
    need = 4;
    while (buf.length >= 4) {
        const n = buf.readUInt32BE(0);
        if (n > MAX_FRAME_BYTES) {
            readError = new Error(`frame of ${n} bytes from host exceeds the limit`);
            break;
        }
        if (buf.length < 4 + n) {
            need = 4 + n;
            break;
        }
        frames.push(buf.toString('utf8', 4, 4 + n));
        buf = buf.subarray(4 + n);
    }
    chunks = buf.length > 0 ? [buf] : [];
    buffered = buf.length;
}

function openChannel() {
    channel = new net.Socket({ fd: FD, readable: true, writable: false });
    channel.on('data', onData);
    channel.on('end', () => { ended = true; if (wake) wake(); });
    channel.on('error', (err) => { readError = readError || err; if (wake) wake(); });
}

// The next frame, decoded; null once the host has closed the channel.
async function readFrame() {
    while (frames.length === 0 && readError === null && !ended) {
        await new Promise((resolve) => { wake = resolve; });
        wake = null;
    }
    if (frames.length > 0) return decode(frames.shift());
    if (readError !== null) throw readError;
    return null;
}

const PAUSE = new Int32Array(new SharedArrayBuffer(4));  // for Atomics.wait in writeRaw

function writeRaw(text) {
    const body = Buffer.from(text, 'utf8');
    if (body.length > MAX_FRAME_BYTES) {
        throw new RangeError(`message of ${body.length} bytes exceeds the frame size limit of ${MAX_FRAME_BYTES} bytes`);
    }
    const frame = Buffer.allocUnsafe(4 + body.length);
    frame.writeUInt32BE(body.length, 0);
    body.copy(frame, 4);
    let off = 0;
    while (off < frame.length) {
        try {
            off += fs.writeSync(FD, frame, off, frame.length - off);
        } catch (e) {
            if (e.code !== 'EAGAIN' && e.code !== 'EINTR') throw e;
            // The event loop made the descriptor non-blocking: a full channel waits for the
            // host to read, a millisecond at a time, without spinning.
            if (e.code === 'EAGAIN') Atomics.wait(PAUSE, 0, 0, 1);
        }
    }
}

function send(msg) {
    writeRaw(encode(msg));
}

// ----- errors with the script's own file name and line numbers -----

let scriptFile = '';
let scriptLines = null;
let scriptSource = '';

function sourceLine(line) {
    if (scriptLines === null) scriptLines = scriptSource.split('\n');
    return line >= 1 && line <= scriptLines.length ? scriptLines[line - 1].trim() : '';
}

const FRAME_RE = /^\s*at (?:(?:async )?(.*?) \()?(.*):(\d+):(\d+)\)?$/;

function errorInfo(err) {
    const isError = err instanceof Error;
    const type = isError ? err.name : typeof err;
    const message = isError ? err.message : String(err);
    const frames = [];
    const stack = isError && typeof err.stack === 'string' ? err.stack.split('\n') : [];
    // A SyntaxError from compilation names the location on its first line: "file:LINE".
    if (isError && err instanceof SyntaxError && stack.length > 0 && stack[0].startsWith(scriptFile + ':')) {
        const line = Number(stack[0].slice(scriptFile.length + 1));
        if (line > 0) frames.push({ file: scriptFile, line, function: '<module>', code: sourceLine(line) });
    }
    for (const text of stack) {
        const m = FRAME_RE.exec(text);
        if (!m || m[2] !== scriptFile) continue;
        const line = Number(m[3]);
        frames.push({ file: m[2], line, column: Number(m[4]), function: m[1] || '<module>', code: sourceLine(line) });
    }
    // V8 lists the innermost frame first; report outermost first, like Python.
    frames.reverse();
    const kept = frames.slice(-MAX_TRACEBACK_FRAMES);
    const lines = [`${type}: ${message}`];
    for (const f of kept.slice().reverse()) lines.push(`    at ${f.function} (${f.file}:${f.line}:${f.column || 0})`);
    return { type, message, traceback: kept, formatted: lines.join('\n') };
}

// ----- the call context -----

let outports = new Set();
const state = new Map(); // committed state: key -> JSON text, decoded on every read
const expires = new Map(); // its keys' expiry times, ms since the epoch
const sizes = new Map(); // key -> bytes of key + JSON, for kMaxStateBytes
let stateBytes = 0;
// The host sends its limits with the load; these are its defaults (runtime/runtime_limits.hpp).
const stateLimits = { keys: 10000, key_bytes: 256, value_bytes: 1 << 20, bytes: 8 << 20, ttl_ms: 10 * 365 * 86400000 };
let handler = null;

class StateLimitError extends Error {
    constructor(message) { super(message); this.name = 'StateLimitError'; }
}

// context.state: the instance's state, read and written with `await`. Changes stay in the
// worker and commit with the call when it succeeds; a failed call commits none of them.
// Expiry times follow Redis: set() and delete() clear a key's time, increment, decrement,
// push, pop and extend keep it.
class State {
    constructor(ctx) { this._ctx = ctx; }
    _get(key, fallback) {
        const raw = this._ctx._raw(key);
        return raw === undefined ? fallback : decode(raw);
    }
    async get(key, fallback = undefined) { return this._get(key, fallback); }
    async set(key, value) {
        if (value === undefined) throw new TypeError(`state value for '${key}' is undefined; use delete to remove it`);
        this._ctx._write(key, encode(value), false);
    }
    async delete(key) {
        const existed = this._ctx._raw(key) !== undefined;
        if (existed || state.has(key)) this._ctx._write(key, null, false);
        return existed;
    }
    async exists(key) { return this._ctx._raw(key) !== undefined; }
    async keys() {
        const names = new Set([...state.keys(), ...this._ctx._changes.keys()]);
        return [...names].filter((k) => this._ctx._raw(k) !== undefined).sort();
    }
    _number(key, amount, sign) {
        if (typeof amount !== 'number') throw new TypeError(`the amount must be a number, not ${typeof amount}`);
        const value = this._get(key, 0);
        if (typeof value !== 'number') throw new TypeError(`state key '${key}' holds ${typeof value}, not a number: it cannot be incremented`);
        const next = value + sign * amount;
        this._ctx._write(key, encode(next), true);
        return next;
    }
    async increment(key, amount = 1) { return this._number(key, amount, 1); }
    async decrement(key, amount = 1) { return this._number(key, amount, -1); }
    _list(key) {
        const value = this._get(key, null);
        if (value === null) return [];
        if (!Array.isArray(value)) throw new TypeError(`state key '${key}' holds ${typeof value}, not an array`);
        return value;
    }
    async push(key, ...values) {
        const items = this._list(key);
        items.push(...values);
        this._ctx._write(key, encode(items), true);
        return items.length;
    }
    async extend(key, values) {
        const items = this._list(key);
        items.push(...values);
        this._ctx._write(key, encode(items), true);
        return items.length;
    }
    async pop(key, fallback = undefined) {
        const items = this._list(key);
        if (items.length === 0) return fallback;
        const last = items.pop();
        this._ctx._write(key, encode(items), true);
        return last;
    }
    // The key vanishes `seconds` from now (0 or less: now). False when it is absent.
    async expire(key, seconds) {
        if (typeof seconds !== 'number') throw new TypeError(`seconds must be a number, not ${typeof seconds}`);
        const ctx = this._ctx;
        if (ctx._raw(key) === undefined) return false;
        if (seconds <= 0) {
            ctx._write(key, null, false);
            return true;
        }
        const ms = Math.floor(seconds * 1000);
        if (ms > stateLimits.ttl_ms) throw new StateLimitError(`an expiry of ${seconds} s is over the limit of ${stateLimits.ttl_ms / 1000} s (kMaxStateTtlMs)`);
        ctx._expChanges.set(key, Date.now() + Math.max(ms, 1));
        return true;
    }
    // Seconds left before the key vanishes; -1 when it has no expiry, -2 when absent.
    async ttl(key) {
        const ctx = this._ctx;
        if (ctx._raw(key) === undefined) return -2;
        const exp = ctx._expChanges.has(key) ? ctx._expChanges.get(key) : expires.get(key);
        if (exp === undefined || exp === null) return -1;
        return Math.max(exp - Date.now(), 0) / 1000;
    }
}

class Context {
    constructor(callId, inputs, config, actorId, timestamp) {
        this.inputs = inputs;
        this.config = config;
        this.actorId = actorId;
        this.timestamp = timestamp;
        this._callId = callId;
        this._changes = new Map(); // key -> JSON text, or null: deleted
        this._expChanges = new Map(); // key -> expiry ms, or null: none
        this._keys = state.size;
        this._bytes = stateBytes;
        this._state = null;
    }
    get state() {
        if (this._state === null) this._state = new State(this);
        return this._state;
    }
    // The key's JSON text in this call, or undefined: changes first, then the committed
    // state; a key whose expiry time has passed is undefined.
    _raw(key) {
        const raw = this._changes.has(key) ? this._changes.get(key) : state.get(key);
        if (raw === undefined || raw === null) return undefined;
        const exp = this._expChanges.has(key) ? this._expChanges.get(key) : expires.get(key);
        if (exp !== undefined && exp !== null && exp <= Date.now()) return undefined;
        return raw;
    }
    _size(key) {
        if (!this._changes.has(key)) return sizes.get(key) || 0;
        const raw = this._changes.get(key);
        return raw === null ? 0 : Buffer.byteLength(key) + Buffer.byteLength(raw);
    }
    _write(key, raw, keepTtl) {
        if (typeof key !== 'string') throw new TypeError(`state key must be a string, not ${typeof key}`);
        let size = 0;
        if (raw !== null) {
            const kb = Buffer.byteLength(key);
            if (kb > stateLimits.key_bytes) throw new StateLimitError(`state key of ${kb} bytes is over the limit of ${stateLimits.key_bytes} bytes (kMaxStateKeyBytes); use shorter keys`);
            const vb = Buffer.byteLength(raw);
            if (vb > stateLimits.value_bytes) throw new StateLimitError(`state value '${key}' is ${vb} bytes as JSON, over the limit of ${stateLimits.value_bytes} bytes (kMaxStateValueBytes); split it over several keys`);
            size = kb + vb;
        }
        const old = this._size(key);
        const keys = this._keys + (size && !old ? 1 : 0) - (old && !size ? 1 : 0);
        const total = this._bytes + size - old;
        if (raw !== null && keys > stateLimits.keys) throw new StateLimitError(`writing '${key}' would make ${keys} state keys, over the limit of ${stateLimits.keys} (kMaxStateKeys); delete keys no longer needed or give them an expiry time`);
        if (raw !== null && total > stateLimits.bytes) throw new StateLimitError(`writing '${key}' would make ${total} bytes of state, over the limit of ${stateLimits.bytes} (kMaxStateBytes); delete keys no longer needed or give them an expiry time`);
        const live = this._raw(key) !== undefined;
        this._changes.set(key, raw);
        this._keys = keys;
        this._bytes = total;
        if ((raw === null || !keepTtl || !live) && (expires.has(key) || this._expChanges.has(key))) this._expChanges.set(key, null);
    }
    getInput(port, fallback = undefined) {
        return Object.prototype.hasOwnProperty.call(this.inputs, port) ? this.inputs[port] : fallback;
    }
    hasInput(port) { return Object.prototype.hasOwnProperty.call(this.inputs, port); }
    getConfig(key, fallback = undefined) {
        return Object.prototype.hasOwnProperty.call(this.config, key) ? this.config[key] : fallback;
    }
    sendOutput(port, value) {
        if (typeof port !== 'string') throw new TypeError(`output port must be a string, not ${typeof port}`);
        if (outports.size > 0 && !outports.has(port)) {
            throw new Error(`unknown output port '${port}'; this actor declares outports ${JSON.stringify([...outports].sort())}`);
        }
        writeRaw(`{"t":"output","id":${this._callId},"port":${JSON.stringify(port)},"data":${encode(value)}}`);
    }
    getState(key, fallback = undefined) {
        const raw = this._raw(key);
        return raw === undefined ? fallback : decode(raw);
    }
    setState(key, value) {
        if (value === undefined) throw new TypeError(`state value for '${key}' is undefined; use deleteState to remove it`);
        this._write(key, encode(value), false);
    }
    deleteState(key) { this._write(key, null, false); }
    getAllState() {
        const out = {};
        for (const k of new Set([...state.keys(), ...this._changes.keys()])) {
            const raw = this._raw(k);
            if (raw !== undefined) out[k] = decode(raw);
        }
        return out;
    }
    log(...parts) {
        send({ t: 'log', id: this._callId, level: 'info', message: parts.map(String).join(' ') });
    }
}
// Python-style aliases, so the same names work in both languages.
Object.assign(Context.prototype, {
    get_input: Context.prototype.getInput, has_input: Context.prototype.hasInput,
    get_config: Context.prototype.getConfig, send_output: Context.prototype.sendOutput,
    get_state: Context.prototype.getState, set_state: Context.prototype.setState,
    delete_state: Context.prototype.deleteState,
});
Object.defineProperty(Context.prototype, 'actor_id', { get() { return this.actorId; } });

// ----- load and serve -----

function deepEqual(a, b) {
    if (a === b) return true;
    if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
    if (Array.isArray(a) !== Array.isArray(b)) return false;
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    if (ka.length !== kb.length) return false;
    return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && deepEqual(a[k], b[k]));
}

// Appended on a line of its own, so the script's line numbers are unchanged. `metadata`
// and `process` are read from the script's own scope: a top-level `async function
// process` shadows Node's global inside the script only.
const CAPTURE = '\n;__sandflow_capture(typeof metadata === "undefined" ? undefined : metadata,' +
    ' typeof process === "function" ? process : undefined);\n';

function load(msg) {
    scriptFile = msg.filename;
    scriptSource = msg.source;
    scriptLines = null;
    // The package sets' folders, searched after node_modules folders on the script's own
    // path, as NODE_PATH's are (the environment is otherwise empty).
    if (Array.isArray(msg.paths) && msg.paths.length > 0) {
        process.env.NODE_PATH = msg.paths.join(path.delimiter);
        require('module')._initPaths();
        delete process.env.NODE_PATH;
    }
    let captured = { metadata: undefined, process: undefined };
    const fn = vm.compileFunction(scriptSource + CAPTURE,
        ['exports', 'require', 'module', '__filename', '__dirname', '__sandflow_capture'],
        { filename: scriptFile });
    const mod = { exports: {} };
    const req = createRequire(path.resolve(scriptFile));
    fn.call(mod.exports, mod.exports, req, mod, scriptFile, path.dirname(scriptFile),
        (metadata, proc) => { captured = { metadata, process: proc }; });
    const exp = mod.exports || {};
    const meta = exp.metadata !== undefined ? exp.metadata : captured.metadata;
    handler = typeof exp.process === 'function' ? exp.process : captured.process;
    if (typeof exp === 'function' && handler === undefined) handler = exp;
    if (meta === undefined || meta === null || typeof meta !== 'object') {
        throw new Error('no metadata object was defined when the script ran');
    }
    if (typeof handler !== 'function') {
        throw new Error('the script defines no function process(context): declare `async function process(context)` or export it');
    }
    const seen = JSON.parse(encode(meta));
    if (!deepEqual(seen, msg.metadata)) {
        throw new Error('the metadata seen at run time differs from the static declaration; declare metadata as a literal, ' +
            `not computed values: static ${JSON.stringify(msg.metadata)}, run time ${JSON.stringify(seen)}`);
    }
    outports = new Set((msg.metadata.outports || []).map((p) => (typeof p === 'string' ? p : p.name)));
    if (msg.state_limits && typeof msg.state_limits === 'object') Object.assign(stateLimits, msg.state_limits);
    setState(msg.state || {}, msg.expires || {});
}

function setState(obj, times) {
    state.clear();
    sizes.clear();
    expires.clear();
    stateBytes = 0;
    for (const k of Object.keys(obj)) {
        const raw = encode(obj[k]);
        state.set(k, raw);
        const n = Buffer.byteLength(k) + Buffer.byteLength(raw);
        sizes.set(k, n);
        stateBytes += n;
    }
    for (const k of Object.keys(times)) if (state.has(k)) expires.set(k, times[k]);
}

function dropExpired() {
    const now = Date.now();
    for (const [k, t] of expires) {
        if (t > now) continue;
        expires.delete(k);
        if (state.delete(k)) {
            stateBytes -= sizes.get(k) || 0;
            sizes.delete(k);
        }
    }
}

async function call(msg) {
    const id = msg.id;
    if (msg.state !== undefined) setState(msg.state, msg.expires || {});
    if (expires.size > 0) dropExpired();
    const ctx = new Context(id, msg.inputs || {}, msg.config || {}, msg.actor_id || '', msg.timestamp || 0);
    let outputs;
    try {
        let result = handler(ctx);
        if (result !== null && typeof result === 'object' && typeof result.then === 'function') result = await result;
        if (result === undefined || result === null) {
            outputs = '{}';
        } else if (typeof result === 'object' && !Array.isArray(result) && !(result instanceof Uint8Array)) {
            outputs = encode(result);
        } else {
            throw new TypeError(`process() returned ${Array.isArray(result) ? 'an array' : typeof result}; return an object of port -> value, or nothing`);
        }
    } catch (err) {
        send({ t: 'error', id, error: errorInfo(err) });
        return;
    }
    const sets = [];
    const deleted = [];
    for (const [k, raw] of ctx._changes) {
        if (raw === null) {
            if (state.delete(k)) {
                stateBytes -= sizes.get(k) || 0;
                sizes.delete(k);
            }
            expires.delete(k);
            deleted.push(k);
        } else {
            const n = Buffer.byteLength(k) + Buffer.byteLength(raw);
            stateBytes += n - (sizes.get(k) || 0);
            sizes.set(k, n);
            state.set(k, raw);
            sets.push(`${JSON.stringify(k)}:${raw}`);
        }
    }
    let expiry = '';
    if (ctx._expChanges.size > 0) {
        const times = {};
        for (const [k, t] of ctx._expChanges) {
            times[k] = t;
            if (t === null) expires.delete(k);
            else if (state.has(k)) expires.set(k, t);
        }
        expiry = `,"expires_set":${JSON.stringify(times)}`;
    }
    const clocks = clock ? `,"clock":[${tReceived},${clock()}]` : '';
    writeRaw(`{"t":"result","id":${id},"outputs":${outputs},"state_set":{${sets.join(',')}},"state_deleted":${JSON.stringify(deleted)}${expiry}${clocks}}`);
}

async function main() {
    const hello = { t: 'hello', v: PROTOCOL_VERSION, lang: 'javascript', runtime: process.versions.node, pid: process.pid };
    if (clock) hello.clock = [T_UP, clock()];
    send(hello);
    openChannel();
    const first = await readFrame();
    if (first === null) return;
    if (clock) tReceived = clock();
    if (first.t !== 'load') {
        send({ t: 'load_error', error: { type: 'ProtocolError', message: 'expected a load frame first' } });
        return;
    }
    try {
        load(first);
    } catch (err) {
        send({ t: 'load_error', error: errorInfo(err) });
        return;
    }
    send(clock ? { t: 'loaded', clock: [tReceived, clock()] } : { t: 'loaded' });
    for (;;) {
        const msg = await readFrame();
        if (msg === null || msg.t === 'exit') return;
        if (clock) tReceived = clock();
        if (msg.t === 'call') {
            await call(msg);
        } else {
            send({ t: 'error', id: msg.id || 0, error: { type: 'ProtocolError', message: `unknown frame type ${msg.t}` } });
        }
    }
}

main().then(() => process.exit(0), (err) => {
    process.stderr.write(`sandflow worker: ${err && err.stack ? err.stack : err}\n`);
    process.exit(70);
});
