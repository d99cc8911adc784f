# Sandflow Python worker: the actor SDK shim (docs/worker-protocol.md, docs/actors.md).
#
# Started by the host's bootstrap (actor/sdk.cpp), which runs this file's code compiled at
# build time, or as `python3 -I -S -c <this file> [timeline] <channel fd>`, with a cleared
# environment. It speaks length-prefixed JSON frames with the host over the inherited channel
# descriptor; stdout and stderr are the script's own and the host captures them as log lines.
# One file of ~750 lines: the worker runs it as one script (one compiled code object, no
# imports of its own modules, whose lookups on every start would cost more than they save).
#
# Start-up cost matters (a worker is started per actor instance), so this file imports only
# what every call needs, and nothing a bare interpreter has not loaded already where it can:
# `posix` rather than `os` (os pulls in posixpath, stat and _collections_abc, ~0.8 ms), the C
# codec in `_json` rather than the `json` package (which pulls in `re`, ~5 ms), `binascii` only
# when bytes travel. asyncio (~40 ms to import) is used only when the script itself imported
# it; otherwise coroutines are driven by hand.
import posix
import select
import sys
import builtins
import _json
from time import time as _time

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 << 20  # limits::kMaxFrameBytes on the host
MAX_TRACEBACK_FRAMES = 64   # limits::kMaxTracebackFrames

_fd = int(sys.argv[-1])
# With `timeline` before the descriptor (sandbox_bench --timeline) the hello, loaded and
# result frames carry CLOCK_MONOTONIC readings of this worker's steps
# (sandbox::StartTimeline); `time` is built in.
_clock = __import__("time").monotonic_ns if "timeline" in sys.argv[1:-1] else None
_T_UP = globals().get("_T0") or (_clock and _clock())
if _fd == 0:
    # A sandbox that hands its worker only the standard descriptors (gvisor) gives the
    # channel as stdin. It moves to a descriptor of its own and stdin becomes /dev/null, as
    # on every other backend: a script that reads stdin finds it empty instead of taking the
    # protocol's bytes.
    _fd = posix.dup(0)
    _null = posix.open("/dev/null", posix.O_RDONLY)
    posix.dup2(_null, 0)
    posix.close(_null)
    del _null
# Compiled in this worker (from source, or by a bootstrap whose interpreter's bytecode magic
# differs from the build's), this worker reports its compiled code and that magic in its
# hello, before any script has run in it; the host starts later workers from that code
# instead of compiling this file again (~4 ms each).
_SELF_CODE = None if globals().get("_BOOTSTRAPPED") else sys._getframe().f_code
_t_received = 0  # when the frame being handled arrived (with `timeline`)


# ----- JSON codec: plain JSON plus {"$bytes": base64} for bytes (docs/values.md) -----

class _ScanContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = {}

    @staticmethod
    def parse_constant(name):
        raise ValueError("non-standard JSON constant " + name)


class _BytesScanContext(_ScanContext):
    @staticmethod
    def object_hook(obj):
        if len(obj) == 1 and "$bytes" in obj:
            import binascii
            return binascii.a2b_base64(obj["$bytes"])
        return obj


_scan = _json.make_scanner(_ScanContext)
_scan_bytes = _json.make_scanner(_BytesScanContext)


def _decode(raw):
    return _decode_text(raw.decode("utf-8"))


def _decode_text(text):
    scanner = _scan_bytes if '"$bytes"' in text else _scan
    value, end = scanner(text, 0)
    if text[end:].strip():
        raise ValueError("trailing data after JSON value")
    return value


def _default(obj):
    if isinstance(obj, (bytes, bytearray, memoryview)):
        import binascii
        return {"$bytes": binascii.b2a_base64(bytes(obj), newline=False).decode("ascii")}
    raise TypeError(
        "value of type %s is not JSON serializable: send dict, list, tuple, str, int, "
        "float, bool, None or bytes" % type(obj).__name__)


def _encode(value):
    # A new encoder each time: its markers dict, which turns a circular structure into a
    # clear error, must start empty (an exception mid-encode leaves entries behind).
    encoder = _json.make_encoder({}, _default, _json.encode_basestring, None, ":", ",",
                                 False, False, False)
    return "".join(encoder(value, 0))


# ----- frames -----

_rbuf = bytearray()
# Waiting in poll() rather than in read(): a unix socket wakes a task blocked in read() on
# it whenever the host consumes what this worker wrote (the socket's write space returns),
# so a blocking read would wake, find nothing and sleep again once per call. poll() wakes
# for input only.
_poller = select.poll()
_poller.register(_fd, select.POLLIN)


def _fill(size):
    """Reads until the buffer holds at least `size` bytes."""
    while len(_rbuf) < size:
        _poller.poll()
        chunk = posix.read(_fd, max(65536, size - len(_rbuf)))
        if not chunk:
            raise EOFError
        _rbuf.extend(chunk)


def _read_frame():
    if len(_rbuf) < 4:
        _fill(4)
    n = int.from_bytes(_rbuf[:4], "big")
    if n > MAX_FRAME_BYTES:
        raise ValueError("frame of %d bytes from host exceeds the limit" % n)
    end = 4 + n
    if len(_rbuf) < end:
        _fill(end)
    text = _rbuf[4:end].decode("utf-8")
    del _rbuf[:end]
    return _decode_text(text)


def _write_raw(payload):
    data = payload.encode("utf-8")
    if len(data) > MAX_FRAME_BYTES:
        raise ValueError("message of %d bytes exceeds the frame size limit of %d bytes"
                         % (len(data), MAX_FRAME_BYTES))
    data = len(data).to_bytes(4, "big") + data
    n = posix.write(_fd, data)
    if n < len(data):  # the channel is full: the rest as the host reads
        view = memoryview(data)[n:]
        while view:
            view = view[posix.write(_fd, view):]


def _send(msg):
    _write_raw(_encode(msg))


# ----- errors with the script's own file name and line numbers -----

_script_file = None
_script_lines = None
# The name the script's code has while it loads (see _load); frames and syntax errors under
# it are the script's own then.
_EXEC_NAME = "<string>"
_loading = False


def _source_line(lineno):
    global _script_lines
    if _script_lines is None:
        _script_lines = _script_source.splitlines()
    if 1 <= lineno <= len(_script_lines):
        return _script_lines[lineno - 1].strip()
    return ""


def _error_info(exc):
    names = (_script_file, _EXEC_NAME) if _loading else (_script_file,)
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename in names:
            frames.append({"file": _script_file, "line": tb.tb_lineno,
                           "function": code.co_name, "code": _source_line(tb.tb_lineno)})
        tb = tb.tb_next
    if isinstance(exc, SyntaxError) and exc.filename in names and exc.lineno:
        frames.append({"file": _script_file, "line": exc.lineno, "column": exc.offset or 0,
                       "function": "<module>", "code": (exc.text or "").strip()})
    frames = frames[-MAX_TRACEBACK_FRAMES:]
    message = str(exc) if not isinstance(exc, SyntaxError) else (exc.msg or str(exc))
    lines = ["Traceback (most recent call last):"]
    for f in frames:
        lines.append('  File "%s", line %d, in %s' % (f["file"], f["line"], f["function"]))
        if f["code"]:
            lines.append("    " + f["code"])
    lines.append("%s: %s" % (type(exc).__name__, message))
    return {"type": type(exc).__name__, "message": message, "traceback": frames,
            "formatted": "\n".join(lines)}


# ----- the actor decorator and the call context -----

_registered = []


def actor(*args, **kwargs):
    """@actor({...}) or @actor(name=..., inports=[...], ...): declares the actor."""
    if args and kwargs:
        raise TypeError("@actor takes either one metadata dict or keyword arguments, not both")
    if len(args) > 1 or (args and not isinstance(args[0], dict)):
        raise TypeError("@actor takes one metadata dict: @actor({\"component\": ...})")
    meta = dict(args[0]) if args else dict(kwargs)

    def register(fn):
        if not callable(fn):
            raise TypeError("@actor must decorate a function")
        _registered.append((meta, fn))
        return fn
    return register


class _Done:
    """Returned by the context's actions: they take effect at once, and `await`ing the
    result (as Reflow's actors do) is harmless."""
    __slots__ = ()

    def __await__(self):
        return iter(())


_DONE = _Done()
_MISSING = object()
_AWAITABLE_CACHE = {}


def _caller_awaits():
    """True when the caller's next instruction awaits our return value, so that both
    `context.get_state(k)` and Reflow's `await context.get_state(k)` get the value."""
    frame = sys._getframe(2)
    code = frame.f_code
    key = (code, frame.f_lasti)
    hit = _AWAITABLE_CACHE.get(key)
    if hit is None:
        hit = False
        if code.co_flags & 0x80:  # CO_COROUTINE: only a coroutine can await
            # f_lasti points at the call or into its inline caches: the next real
            # instruction is the one that consumes the return value. (`dis` would do,
            # but importing it costs milliseconds.)
            import opcode
            cache = opcode.opmap.get("CACHE", -1)
            co = code.co_code
            i = frame.f_lasti + 2
            while i < len(co) and co[i] == cache:
                i += 2
            hit = i < len(co) and co[i] == opcode.opmap["GET_AWAITABLE"]
        _AWAITABLE_CACHE[key] = hit
    return hit


class _Value:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __await__(self):
        return self.value
        yield  # makes this a generator function


class StateLimitError(Exception):
    """A state write crossed one of the state's named limits (docs/actors.md#state)."""


def _now_ms():
    return int(_time() * 1000)


class Context:
    __slots__ = ("inputs", "config", "actor_id", "timestamp", "_call_id", "_changes",
                 "_exp_changes", "_keys", "_bytes", "_state_obj")

    def __init__(self, call_id, inputs, config, actor_id, timestamp):
        self.inputs = inputs
        self.config = config
        self.actor_id = actor_id
        self.timestamp = timestamp
        self._call_id = call_id
        self._changes = {}      # key -> JSON bytes, or None: deleted
        self._exp_changes = {}  # key -> expiry ms, or None: none
        self._keys = len(_state)
        self._bytes = _state_bytes[0]
        self._state_obj = None

    @property
    def state(self):
        """The async state object: `await context.state.get(key, default)` and more."""
        if self._state_obj is None:
            self._state_obj = State(self)
        return self._state_obj

    # The value a key has in this call (raw JSON bytes), or _MISSING: changes first, then
    # the committed state; a key whose expiry time has passed is missing.
    def _raw(self, key):
        raw = self._changes.get(key, _MISSING)
        if raw is _MISSING:
            raw = _state.get(key, _MISSING)
        if raw is _MISSING or raw is None:
            return _MISSING
        exp = self._exp_changes.get(key, _MISSING)
        if exp is _MISSING:
            exp = _expires.get(key)
        if exp is not None and exp <= _now_ms():
            return _MISSING
        return raw

    def _size(self, key):
        raw = self._changes.get(key, _MISSING)
        if raw is _MISSING:
            return _state_sizes.get(key, 0)
        return 0 if raw is None else len(key) + len(raw)

    def _write(self, key, raw, keep_ttl):
        if not isinstance(key, str):
            raise TypeError("state key must be a str, not %s" % type(key).__name__)
        lim = _state_limits
        if raw is not None:
            kb = len(key.encode("utf-8"))
            if kb > lim["key_bytes"]:
                raise StateLimitError(
                    "state key of %d bytes is over the limit of %d bytes (kMaxStateKeyBytes);"
                    " use shorter keys" % (kb, lim["key_bytes"]))
            if len(raw) > lim["value_bytes"]:
                raise StateLimitError(
                    "state value %r is %d bytes as JSON, over the limit of %d bytes"
                    " (kMaxStateValueBytes); split it over several keys"
                    % (key, len(raw), lim["value_bytes"]))
        old = self._size(key)
        new = 0 if raw is None else len(key) + len(raw)
        keys = self._keys + (1 if new and not old else 0) - (1 if old and not new else 0)
        total = self._bytes + new - old
        if raw is not None and keys > lim["keys"]:
            raise StateLimitError(
                "writing %r would make %d state keys, over the limit of %d (kMaxStateKeys);"
                " delete keys no longer needed or give them an expiry time"
                % (key, keys, lim["keys"]))
        if raw is not None and total > lim["bytes"]:
            raise StateLimitError(
                "writing %r would make %d bytes of state, over the limit of %d"
                " (kMaxStateBytes); delete keys no longer needed or give them an expiry time"
                % (key, total, lim["bytes"]))
        live = self._raw(key) is not _MISSING
        self._changes[key] = raw
        self._keys = keys
        self._bytes = total
        if raw is None or not keep_ttl or not live:
            if key in _expires or key in self._exp_changes:
                self._exp_changes[key] = None

    # inputs and config
    def get_input(self, port, default=None):
        return self.inputs.get(port, default)

    def has_input(self, port):
        return port in self.inputs

    def get_config(self, key, default=None):
        return self.config.get(key, default)

    # outputs: each one reaches the host before this returns
    def send_output(self, port, value):
        if not isinstance(port, str):
            raise TypeError("output port must be a str, not %s" % type(port).__name__)
        if _outports and port not in _outports:
            raise ValueError("unknown output port %r; this actor declares outports %s"
                             % (port, sorted(_outports)))
        _write_raw('{"t":"output","id":%d,"port":%s,"data":%s}'
                   % (self._call_id, _encode(port), _encode(value)))
        return _DONE

    send_output_sync = send_output

    # state: changes commit only when the call succeeds
    def get_state(self, key, default=None):
        raw = self._raw(key)
        value = default if raw is _MISSING else _decode(raw)
        return _Value(value) if _caller_awaits() else value

    def set_state(self, key, value):
        self._write(key, _encode(value).encode("utf-8"), False)  # a copy, checked now
        return _DONE

    def delete_state(self, key):
        self._write(key, None, False)
        return _DONE

    def get_all_state(self):
        keys = set(_state)
        keys.update(self._changes)
        out = {}
        for k in keys:
            raw = self._raw(k)
            if raw is not _MISSING:
                out[k] = _decode(raw)
        return out

    # logs go to the host's log, tagged with this call
    def log(self, *parts, level="info"):
        _send({"t": "log", "id": self._call_id, "level": str(level),
               "message": " ".join(str(p) for p in parts)})
        return _DONE

    # Reflow / JS-style aliases
    getInput = get_input
    hasInput = has_input
    getConfig = get_config
    sendOutput = send_output
    getState = get_state
    setState = set_state
    deleteState = delete_state


class State:
    """context.state: the instance's state, read and written with `await`. Changes are
    kept in the worker and committed with the call when it succeeds; a failed call
    commits none of them. Expiry times follow Redis: set() and delete() clear a key's
    time, increment/decrement/push/pop/extend keep it."""
    __slots__ = ("_ctx",)

    def __init__(self, ctx):
        self._ctx = ctx

    def _get(self, key, default=None):
        raw = self._ctx._raw(key)
        return default if raw is _MISSING else _decode(raw)

    def get(self, key, default=None):
        return _Value(self._get(key, default))

    def set(self, key, value):
        self._ctx._write(key, _encode(value).encode("utf-8"), False)
        return _Value(None)

    def delete(self, key):
        existed = self._ctx._raw(key) is not _MISSING
        if existed or key in _state:
            self._ctx._write(key, None, False)
        return _Value(existed)

    def exists(self, key):
        return _Value(self._ctx._raw(key) is not _MISSING)

    def keys(self):
        ctx = self._ctx
        names = set(_state)
        names.update(ctx._changes)
        return _Value(sorted(k for k in names if ctx._raw(k) is not _MISSING))

    def _number(self, key, amount, sign):
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise TypeError("the amount must be a number, not %s" % type(amount).__name__)
        value = self._get(key, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("state key %r holds %s, not a number: it cannot be incremented"
                            % (key, type(value).__name__))
        value = value + sign * amount
        self._ctx._write(key, _encode(value).encode("utf-8"), True)
        return _Value(value)

    def increment(self, key, amount=1):
        return self._number(key, amount, 1)

    def decrement(self, key, amount=1):
        return self._number(key, amount, -1)

    def _list(self, key):
        value = self._get(key, None)
        if value is None:
            return []
        if not isinstance(value, list):
            raise TypeError("state key %r holds %s, not a list" % (key, type(value).__name__))
        return value

    def push(self, key, *values):
        items = self._list(key)
        items.extend(values)
        self._ctx._write(key, _encode(items).encode("utf-8"), True)
        return _Value(len(items))

    def extend(self, key, values):
        items = self._list(key)
        items.extend(values)
        self._ctx._write(key, _encode(items).encode("utf-8"), True)
        return _Value(len(items))

    def pop(self, key, default=None):
        items = self._list(key)
        if not items:
            return _Value(default)
        last = items.pop()
        self._ctx._write(key, _encode(items).encode("utf-8"), True)
        return _Value(last)

    def expire(self, key, seconds):
        """The key vanishes `seconds` from now (0 or less: now). False when it is absent."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError("seconds must be a number, not %s" % type(seconds).__name__)
        ctx = self._ctx
        if ctx._raw(key) is _MISSING:
            return _Value(False)
        if seconds <= 0:
            ctx._write(key, None, False)
            return _Value(True)
        ms = int(seconds * 1000)
        if ms > _state_limits["ttl_ms"]:
            raise StateLimitError("an expiry of %s s is over the limit of %d s (kMaxStateTtlMs)"
                                  % (seconds, _state_limits["ttl_ms"] // 1000))
        ctx._exp_changes[key] = _now_ms() + max(ms, 1)
        return _Value(True)

    def ttl(self, key):
        """Seconds left before the key vanishes; -1 when it has no expiry, -2 when absent."""
        ctx = self._ctx
        if ctx._raw(key) is _MISSING:
            return _Value(-2)
        exp = ctx._exp_changes.get(key, _MISSING)
        if exp is _MISSING:
            exp = _expires.get(key)
        if exp is None:
            return _Value(-1)
        return _Value(max(exp - _now_ms(), 0) / 1000.0)


# ----- load and serve -----

_script_source = ""
_handler = None
_outports = frozenset()
_state = {}  # committed state: key -> JSON text (bytes), decoded on every read
_expires = {}  # its keys' expiry times, ms since the epoch
_state_sizes = {}  # key -> len(key) + len(JSON), for kMaxStateBytes
_state_bytes = [0]
# The host sends its limits with the load; these are its defaults (runtime/runtime_limits.hpp).
_state_limits = {"keys": 10000, "key_bytes": 256, "value_bytes": 1 << 20, "bytes": 8 << 20,
                 "ttl_ms": 10 * 365 * 86400000}
_loop = None


def _port_names(ports):
    names = set()
    for p in ports or ():
        names.add(p if isinstance(p, str) else p.get("name"))
    return frozenset(names)


def _name_code():
    """Called by the last line of the script's text (see _load): gives the script's code, and
    every function and class body in it, the script's file name (in place, as importlib does
    for moved .pyc files), so that the frames of later calls name it."""
    __import__("_imp")._fix_co_filename(sys._getframe(1).f_code, _script_file)


def _load(msg):
    global _script_file, _script_source, _handler, _outports, _script_lines, _loading
    _script_file = msg["filename"]
    _script_source = msg["source"]
    _script_lines = None
    static = msg["metadata"]
    namespace = {"__name__": "__sandflow_actor__", "__file__": _script_file,
                 "__builtins__": builtins, "actor": actor, "__sandflow_name_code__": _name_code}
    # exec() of the text, not compile(): builtins.compile first builds the `ast` module's node
    # types (~0.6 ms in a fresh interpreter, most of a small script's load), exec() of a str
    # does not, but names the code "<string>". A line appended at the end renames it once the
    # module has run; until then (an error at import time) _error_info takes "<string>" frames
    # as the script's. Appending after the last line keeps every line number. A failed load
    # ends the worker, so _loading stays set for its error report.
    # The package sets' folders, after the standard library's: a set cannot shadow it.
    sys.path.extend(msg.get("paths") or ())
    _loading = True
    exec(_script_source + "\n__sandflow_name_code__()\n", namespace)
    _loading = False
    namespace.pop("__sandflow_name_code__", None)
    if _registered:
        if len(_registered) > 1:
            raise RuntimeError("the script declared %d actors; one script declares one actor"
                               % len(_registered))
        runtime_meta, _handler = _registered[0]
    else:
        runtime_meta = namespace.get("__actor_metadata__")
        _handler = namespace.get("process")
        if not isinstance(runtime_meta, dict):
            raise RuntimeError("no @actor declaration ran and __actor_metadata__ is not a dict")
        if not callable(_handler):
            raise RuntimeError("__actor_metadata__ is declared but no function process(context)"
                               " is defined")
    seen = _decode(_encode(runtime_meta).encode("utf-8"))
    if seen != static:
        raise RuntimeError("the metadata seen at run time differs from the static declaration;"
                           " declare metadata as a literal, not computed values: static %s,"
                           " run time %s" % (_encode(static), _encode(seen)))
    _outports = _port_names(static.get("outports"))
    limits = msg.get("state_limits")
    if isinstance(limits, dict):
        _state_limits.update(limits)
    _set_state(msg.get("state") or {}, msg.get("expires") or {})


def _set_state(state, expires):
    _state.clear()
    _state_sizes.clear()
    _expires.clear()
    total = 0
    for k, v in state.items():
        raw = _encode(v).encode("utf-8")
        _state[k] = raw
        _state_sizes[k] = len(k) + len(raw)
        total += len(k) + len(raw)
    _state_bytes[0] = total
    for k, t in expires.items():
        if k in _state:
            _expires[k] = t


def _drop_expired():
    now = _now_ms()
    for k in [k for k, t in _expires.items() if t <= now]:
        del _expires[k]
        if _state.pop(k, None) is not None:
            _state_bytes[0] -= _state_sizes.pop(k, 0)


def _run(result):
    """Completes a coroutine (or other awaitable) returned by the handler."""
    global _loop
    if "asyncio" in sys.modules:
        if _loop is None:
            _loop = sys.modules["asyncio"].new_event_loop()
        return _loop.run_until_complete(result)
    it = result.__await__() if not hasattr(result, "send") else result
    try:
        it.send(None)
    except StopIteration as stop:
        return stop.value
    it.close()
    raise RuntimeError("process() awaited something that needs an event loop, but asyncio "
                       "was not imported when the call started: add `import asyncio` at the "
                       "top of the script")


def _call(msg):
    call_id = msg["id"]
    if "state" in msg:
        _set_state(msg["state"], msg.get("expires") or {})
    if _expires:
        _drop_expired()
    ctx = Context(call_id, msg.get("inputs") or {}, msg.get("config") or {},
                  msg.get("actor_id", ""), msg.get("timestamp", 0))
    try:
        result = _handler(ctx)
        if hasattr(result, "__await__"):
            result = _run(result)
        if result is None:
            outputs = "{}"
        elif isinstance(result, dict):
            outputs = _encode(result)
        else:
            raise TypeError("process() returned %s; return a dict of port -> value, or None"
                            % type(result).__name__)
    except BaseException as exc:  # sys.exit() included: the worker reports it and lives on
        _flush_std()
        _send({"t": "error", "id": call_id, "error": _error_info(exc)})
        return
    changes = ctx._changes
    sets = []
    deleted = []
    for k, raw in changes.items():
        if raw is None:
            if _state.pop(k, None) is not None:
                _state_bytes[0] -= _state_sizes.pop(k, 0)
            _expires.pop(k, None)
            deleted.append(k)
        else:
            _state_bytes[0] += len(k) + len(raw) - _state_sizes.get(k, 0)
            _state[k] = raw
            _state_sizes[k] = len(k) + len(raw)
            sets.append("%s:%s" % (_encode(k), raw.decode("utf-8")))
    expiry = ""
    if ctx._exp_changes:
        for k, t in ctx._exp_changes.items():
            if t is None:
                _expires.pop(k, None)
            elif k in _state:
                _expires[k] = t
        expiry = ',"expires_set":' + _encode(ctx._exp_changes)
    _flush_std()
    clock = ',"clock":[%d,%d]' % (_t_received, _clock()) if _clock else ""
    _write_raw('{"t":"result","id":%d,"outputs":%s,"state_set":{%s},"state_deleted":%s%s%s}'
               % (call_id, outputs, ",".join(sets), _encode(deleted) if deleted else "[]",
                  expiry, clock))


def _flush_std():
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass


def _frames():
    """The host's frames as they arrive, each one's arrival noted for the clock, until the
    host closes the channel."""
    global _t_received
    while True:
        try:
            msg = _read_frame()
        except EOFError:
            return
        if _clock:
            _t_received = _clock()
        yield msg


def main():
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except Exception:
        pass
    hello = {"t": "hello", "v": PROTOCOL_VERSION, "lang": "python",
             "runtime": "%d.%d.%d" % sys.version_info[:3], "pid": posix.getpid()}
    if _SELF_CODE is not None:
        import binascii
        import marshal
        hello["code"] = binascii.b2a_base64(marshal.dumps(_SELF_CODE), newline=False).decode()
        magic = sys.modules["_frozen_importlib_external"].MAGIC_NUMBER
        hello["magic"] = binascii.b2a_base64(magic, newline=False).decode()
    if _clock:
        hello["clock"] = [_T_UP, _clock()]
    _send(hello)
    frames = _frames()
    for msg in frames:
        break  # the first frame: the load
    else:
        return  # the host closed the channel first
    if msg.get("t") != "load":
        _send({"t": "load_error", "error": {"type": "ProtocolError",
                                             "message": "expected a load frame first"}})
        return
    try:
        _load(msg)
    except BaseException as exc:
        _flush_std()
        _send({"t": "load_error", "error": _error_info(exc)})
        return
    _send({"t": "loaded", "clock": [_t_received, _clock()]} if _clock else {"t": "loaded"})
    for msg in frames:
        kind = msg.get("t")
        if kind == "call":
            _call(msg)
        elif kind == "exit":
            return
        else:
            _send({"t": "error", "id": msg.get("id", 0),
                   "error": {"type": "ProtocolError", "message": "unknown frame type %r" % kind}})


main()
