#include "runtime/worker.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>

#include "actor/sdk.hpp"
#include "core/duration.hpp"
#include "core/limits.hpp"
#include "runtime/runtime_limits.hpp"
#include "sandflow/value.hpp"

namespace sandflow::runtime {

namespace {

constexpr int kProtocolVersion = 1;
constexpr std::size_t kStderrTailLines = 20;  // kept for the error when a worker dies
constexpr std::size_t kReadChunk = 64u << 10;

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

int poll_timeout_ms(Clock::time_point deadline) {
    const auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) return 0;
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return ms > 60'000 ? 60'000 : static_cast<int>(ms);
}

Error protocol_violation(std::string_view what) {
    return Error(Errc::worker_crashed,
                 "the worker broke the frame protocol (" + std::string(what) +
                     "); it was killed and the next call starts a new one",
                 {{"reason", "protocol_violation"}});
}

const json::string* string_field(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    return v && v->is_string() ? &v->get_string() : nullptr;
}

// "ValueError: bad input (at double.py:12 in process)"
Error script_error(json::object info, std::string_view during) {
    std::string msg(during);
    msg += ": ";
    const auto* type = string_field(info, "type");
    const auto* message = string_field(info, "message");
    msg += type ? std::string(*type) : "Error";
    if (message && !message->empty()) msg += ": " + std::string(*message);
    if (const auto* tb = info.if_contains("traceback");
        tb && tb->is_array() && !tb->get_array().empty()) {
        const auto& last = tb->get_array().back();
        if (last.is_object()) {
            const auto& f = last.get_object();
            const auto* file = string_field(f, "file");
            const auto* line = f.if_contains("line");
            const auto* fn = string_field(f, "function");
            if (file && line && line->is_int64()) {
                msg += " (at " + std::string(*file) + ":" + std::to_string(line->get_int64());
                if (fn) msg += " in " + std::string(*fn);
                msg += ")";
            }
        }
    }
    // The error's data is what the script said, and the script is not trusted: only the
    // fields the worker protocol defines, with their types, pass. Anything else (a
    // "reason", an "errc") would let a script pose as one of the runtime's own conditions.
    json::object data;
    if (type) data["type"] = *type;
    if (message) data["message"] = *message;
    if (const auto* tb = info.if_contains("traceback"); tb && tb->is_array())
        data["traceback"] = std::move(info["traceback"]);
    if (const auto* f = string_field(info, "formatted")) data["formatted"] = *f;
    return Error(Errc::script, std::move(msg), std::move(data));
}

// The Python shim's compiled code that workers are started from (sdk::python_bootstrap_argv):
// the build's, until a worker reports that its interpreter's bytecode magic differs and sends
// its own code (compiled before any script ran in it); the first such report is kept.
struct PythonCode {
    std::mutex mutex;
    std::string magic{actor::sdk::kPythonWorkerMagic};
    std::string code{actor::sdk::kPythonWorkerCode};
};
PythonCode& python_code() {
    static PythonCode cache;
    return cache;
}

std::uint64_t next_worker_serial() {
    static std::atomic<std::uint64_t> next{1};
    return next++;
}

}  // namespace

Worker::Worker(std::unique_ptr<sandbox::Process> proc, std::function<void(const LogLine&)> on_log)
    : proc_(std::move(proc)), serial_(next_worker_serial()), default_log_(std::move(on_log)) {
    if (!default_log_) default_log_ = [](const LogLine&) {};
}

Worker::~Worker() {
    kill();
}

bool Worker::alive() {
    if (proc_ && proc_->try_wait()) {
        drain_stdio(default_log_);
        proc_.reset();
    }
    return proc_ != nullptr;
}

pid_t Worker::pid() const {
    return proc_ ? proc_->pid() : -1;
}

const sandbox::SandboxLimits* Worker::sandbox_limits() const {
    return proc_ ? proc_->limits() : nullptr;
}

Result<bool> Worker::update_sandbox_limits(const sandbox::SandboxLimits& limits) {
    if (!proc_) return false;
    const auto* now = proc_->limits();
    if (!now || *now == limits) return true;
    return proc_->update_limits(limits);
}

void Worker::kill() {
    if (proc_) {
        proc_->kill_and_wait();
        proc_.reset();
    }
}

Result<std::unique_ptr<Worker>> Worker::spawn(sandbox::Backend& backend, actor::Language language,
                                              std::chrono::milliseconds start_timeout,
                                              std::function<void(const LogLine&)> on_log,
                                              std::optional<sandbox::SandboxLimits> limits,
                                              sandbox::StartTimeline* timeline,
                                              std::vector<sandbox::SharedDir> packages) {
    return spawn_impl(backend, language, start_timeout, std::move(on_log), std::move(limits),
                      timeline, std::move(packages), nullptr);
}

Result<std::unique_ptr<Worker>> Worker::spawn_impl(
    sandbox::Backend& backend, actor::Language language, std::chrono::milliseconds start_timeout,
    std::function<void(const LogLine&)> on_log, std::optional<sandbox::SandboxLimits> limits,
    sandbox::StartTimeline* timeline, std::vector<sandbox::SharedDir> packages,
    const LoadSpec* preload) {
    const std::int64_t begin_ns = sandbox::monotonic_ns();
    if (timeline) timeline->mark_at(sandbox::StartMark::spawn_begin, begin_ns);
    sandbox::WorkerSpec ws;
    ws.limits = limits;
    ws.timeline = timeline;
    ws.shared = packages;
    const bool python = language == actor::Language::python;
    std::string code_frame, magic;
    const int channel_fd = backend.channel_fd_in_worker();
    if (python) {
        {
            std::lock_guard lock(python_code().mutex);
            magic = python_code().magic;
            code_frame = actor::sdk::python_code_frame(magic, python_code().code);
        }
        ws.argv = actor::sdk::python_bootstrap_argv(channel_fd, timeline != nullptr);
    } else {
        ws.argv = actor::sdk::worker_argv(language, channel_fd, timeline != nullptr);
    }
    auto proc = backend.spawn(ws);
    if (!proc) return tl::unexpected(proc.error());
    std::unique_ptr<Worker> w(new Worker(std::move(*proc), std::move(on_log)));
    w->language_ = language;
    for (const auto& d : packages) w->package_paths_.push_back(backend.shared_dir_path(d));
    w->packages_ = std::move(packages);
    w->timeline_ = timeline;
    w->timeline_begin_ns_ = begin_ns;
    // A sandbox that boots (a VM) gets its boot's time on top.
    start_timeout += backend.boot_allowance();
    const auto deadline = Clock::now() + start_timeout;
    auto not_started = [&] {
        return fail(Errc::sandbox_unavailable,
                    "the worker did not start within " + format_duration(start_timeout));
    };
    if (auto ok = w->watch_descriptors(); !ok) return tl::unexpected(ok.error());
    if (python) {
        if (auto s = w->queue_send(encode_raw_frame(code_frame)); !s)
            return tl::unexpected(s.error());
    }
    // The load goes with the start: the worker finds it waiting once its hello is out, and
    // no round trip separates the two.
    if (preload) {
        if (auto s = w->send_load(*preload); !s) return tl::unexpected(s.error());
    }

    auto hello = w->pump(
        deadline,
        [&](json::object& f) -> Result<bool> {
            const auto* t = string_field(f, "t");
            const auto* v = f.if_contains("v");
            if (!t || *t != "hello")
                return tl::unexpected(protocol_violation("expected hello first"));
            if (!v || !v->is_int64() || v->get_int64() != kProtocolVersion)
                return tl::unexpected(protocol_violation("unsupported protocol version"));
            if (const auto* rt = string_field(f, "runtime")) w->runtime_version_ = std::string(*rt);
            w->mark_worker_clock(f, sandbox::StartMark::interpreter_up,
                                 sandbox::StartMark::sdk_ready);
            sandbox::mark(timeline, sandbox::StartMark::hello_received);
            // Trusted: no script has run in this worker yet. Only a worker that compiled the
            // shim itself reports its code, with its interpreter's magic; the first report
            // of a magic other than the one in use is kept.
            const auto* c = string_field(f, "code");
            const auto* m = string_field(f, "magic");
            if (python && c && m) {
                auto bytes = base64_decode(*c);
                auto their_magic = base64_decode(*m);
                if (bytes && their_magic && their_magic->size() == 4) {
                    const std::string tm(their_magic->begin(), their_magic->end());
                    std::lock_guard lock(python_code().mutex);
                    if (python_code().magic == magic && tm != magic) {
                        python_code().magic = tm;
                        python_code().code.assign(bytes->begin(), bytes->end());
                    }
                }
            }
            return true;
        },
        w->default_log_, "start-up");
    if (!hello) {
        if (hello.error().code == Errc::timeout) return not_started();
        return tl::unexpected(hello.error());
    }
    return w;
}

Result<void> Worker::load(const LoadSpec& spec, std::chrono::milliseconds timeout) {
    if (auto sent = send_load(spec); !sent) return sent;
    return await_loaded(spec, timeout);
}

Result<void> Worker::send_load(const LoadSpec& spec) {
    if (loaded_)
        return fail(Errc::internal,
                    "a worker loads one script only; this one already has " + filename_);
    if (spec.metadata.language != language_)
        return fail(Errc::internal, "a " + std::string(actor::language_name(language_)) +
                                        " worker cannot load " + spec.filename);
    if (spec.packages != packages_)
        return fail(Errc::internal,
                    "this worker's sandbox was not given the package sets of " + spec.filename);
    loaded_ = true;
    actor_id_ = spec.actor_id;
    filename_ = spec.filename;
    if (spec.on_log) default_log_ = spec.on_log;
    json::object load{{"t", "load"},
                      {"filename", spec.filename},
                      {"source", spec.source},
                      {"metadata", spec.metadata.raw},
                      {"actor_id", spec.actor_id},
                      {"state", spec.state},
                      {"expires", spec.expires},
                      {"state_limits", json::object{{"keys", limits::kMaxStateKeys},
                                                    {"key_bytes", limits::kMaxStateKeyBytes},
                                                    {"value_bytes", limits::kMaxStateValueBytes},
                                                    {"bytes", limits::kMaxStateBytes},
                                                    {"ttl_ms", limits::kMaxStateTtlMs}}}};
    if (!package_paths_.empty()) {
        json::array paths;
        for (const auto& p : package_paths_) paths.emplace_back(p);
        load["paths"] = std::move(paths);
    }
    // Marked before the send: the worker may read it before send() returns here.
    sandbox::mark(timeline_, sandbox::StartMark::load_sent);
    return queue_frame(load);
}

Result<void> Worker::await_loaded(const LoadSpec& spec, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    std::optional<Error> load_error;
    auto loaded = pump(
        deadline,
        [&](json::object& f) -> Result<bool> {
            const auto* t = string_field(f, "t");
            if (t && *t == "loaded") {
                mark_worker_clock(f, sandbox::StartMark::load_received,
                                  sandbox::StartMark::script_loaded);
                sandbox::mark(timeline_, sandbox::StartMark::loaded_received);
                return true;
            }
            if (t && *t == "load_error") {
                const auto* e = f.if_contains("error");
                load_error = script_error(e && e->is_object() ? e->get_object() : json::object{},
                                          "loading " + spec.filename + " failed");
                return true;
            }
            return tl::unexpected(protocol_violation("expected loaded or load_error"));
        },
        default_log_, "loading the script");
    if (!loaded) {
        if (loaded.error().code == Errc::timeout) {
            kill();
            return fail(Errc::timeout,
                        "loading " + spec.filename + " did not finish within " +
                            format_duration(timeout) +
                            " (does the script run slow code at import time?)",
                        {{"limit", "start_timeout"}, {"value_ms", timeout.count()}});
        }
        return tl::unexpected(loaded.error());
    }
    if (load_error) return tl::unexpected(std::move(*load_error));
    reset_budget(limits::kDefaultOutputBytes);  // until the first call
    return {};
}

Result<std::unique_ptr<Worker>> Worker::start(sandbox::Backend& backend, const LoadSpec& spec,
                                              std::chrono::milliseconds start_timeout,
                                              std::optional<sandbox::SandboxLimits> limits,
                                              sandbox::StartTimeline* timeline) {
    const auto begin = Clock::now();
    auto w = spawn_impl(backend, spec.metadata.language, start_timeout, spec.on_log, limits,
                        timeline, spec.packages, &spec);
    if (!w) return tl::unexpected(w.error());
    // Start-up and load share one deadline, the boot's allowance included (spawn adds it).
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(
        start_timeout + backend.boot_allowance() - (Clock::now() - begin));
    if (auto ok = (*w)->await_loaded(spec, std::max(left, std::chrono::milliseconds(1))); !ok)
        return tl::unexpected(ok.error());
    return w;
}

Result<void> Worker::watch_descriptors() {
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) return tl::unexpected(system_error("epoll_create1", errno));
    const std::pair<int, std::uint32_t> fds[] = {{proc_->channel_fd(), kChannelTag},
                                                 {proc_->stdout_fd(), kStdoutTag},
                                                 {proc_->stderr_fd(), kStderrTag},
                                                 {proc_->limit_event_fd(), kLimitTag}};
    for (const auto& [fd, tag] : fds) {
        if (fd < 0) continue;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = tag;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
            return tl::unexpected(system_error("epoll_ctl", errno));
    }
    return {};
}

void Worker::watch_channel_writable(bool on) {
    if (on == watching_writable_ || !proc_) return;
    epoll_event ev{};
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
    ev.data.u32 = kChannelTag;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, proc_->channel_fd(), &ev) == 0)
        watching_writable_ = on;
}

Result<void> Worker::queue_frame(const json::value& frame) {
    std::string bytes = encode_frame(frame);
    if (bytes.size() - limits::kFrameHeaderBytes > limits::kMaxFrameBytes)
        return fail(Errc::limit_exceeded,
                    "the request is " + std::to_string(bytes.size()) +
                        " bytes, over the frame size limit of " +
                        std::to_string(limits::kMaxFrameBytes) + " bytes",
                    {{"limit", "frame_bytes"}, {"value", limits::kMaxFrameBytes}});
    return queue_send(std::move(bytes));
}

Result<void> Worker::queue_send(std::string bytes) {
    if (!proc_) return fail(Errc::worker_crashed, "the worker is not running");
    if (out_off_ == out_.size()) {
        out_ = std::move(bytes);
        out_off_ = 0;
    } else {
        out_ += bytes;
    }
    return flush();
}

Result<void> Worker::flush() {
    while (out_off_ < out_.size()) {
        // MSG_NOSIGNAL: a worker that died must fail this call, not SIGPIPE the runtime.
        const ssize_t n = ::send(proc_->channel_fd(), out_.data() + out_off_,
                                 out_.size() - out_off_, MSG_NOSIGNAL);
        if (n > 0) {
            out_off_ += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            // The worker is slow to read: the rest goes when the channel polls writable.
            watch_channel_writable(true);
            return {};
        }
        return tl::unexpected(died("sending a request"));
    }
    out_.clear();
    out_off_ = 0;
    watch_channel_writable(false);
    return {};
}

Result<bool> Worker::deliver_frames(const FrameHandler& on_frame, std::string_view during) {
    while (auto frame = decoder_.next()) {
        if (!*frame) {
            Error e = frame->error();
            if (e.code == Errc::limit_exceeded)
                return tl::unexpected(limit_kill(
                    "frame_bytes", e.data.at("value").to_number<std::uint64_t>(), during));
            kill();
            return tl::unexpected(protocol_violation(e.message));
        }
        auto done = on_frame(**frame);
        if (!done) {
            if (proc_) kill();
            return tl::unexpected(done.error());
        }
        if (*done) return true;
    }
    if (output_bytes_ > output_limit_)
        return tl::unexpected(limit_kill("output_bytes", output_limit_, during));
    return false;
}

Result<bool> Worker::turn(int timeout_ms, const FrameHandler& on_frame, const LogSink& on_log,
                          std::string_view during) {
    // Frames already decoded go first: they arrived before anything still to be read.
    if (auto done = deliver_frames(on_frame, during); !done || *done) return done;
    if (!proc_) return fail(Errc::worker_crashed, "the worker is not running");
    epoll_event evs[4];
    int n = ::epoll_wait(epoll_.get(), evs, 4, timeout_ms);
    if (n < 0) {
        if (errno != EINTR) return tl::unexpected(system_error("epoll_wait", errno));
        n = 0;
    }
    std::uint32_t ready = 0;
    for (int i = 0; i < n; ++i) {
        const std::uint32_t tag = evs[i].data.u32;
        if (tag == kChannelTag && (evs[i].events & EPOLLOUT)) {
            if (auto ok = flush(); !ok) return tl::unexpected(ok.error());
        }
        if (tag != kChannelTag || (evs[i].events & ~static_cast<std::uint32_t>(EPOLLOUT)))
            ready |= 1u << tag;
    }
    // A limit crossed before the script answered is seen in the same turn as the answer,
    // and wins.
    if ((ready & (1u << kLimitTag)) && proc_) {
        if (auto hit = proc_->limit_crossed())
            return tl::unexpected(limit_kill(hit->limit, hit->value, during));
    }
    if (ready & (1u << kStdoutTag)) read_stdio(0, on_log);
    if (ready & (1u << kStderrTag)) read_stdio(1, on_log);
    if ((ready & (1u << kChannelTag)) && proc_) {
        char buf[kReadChunk];
        for (;;) {
            const ssize_t r = ::read(proc_->channel_fd(), buf, sizeof buf);
            if (r > 0) {
                decoder_.feed(std::string_view(buf, static_cast<std::size_t>(r)));
                if (static_cast<std::size_t>(r) < sizeof buf) break;
                continue;
            }
            if (r < 0 && errno == EINTR) continue;
            if (r < 0 && errno == EAGAIN) break;
            // EOF or a reset: the worker is gone (or closed its channel, which is as good
            // as gone). Frames already received are still delivered first.
            if (auto done = deliver_frames(on_frame, during); !done || *done) return done;
            return tl::unexpected(died(during));
        }
    }
    return deliver_frames(on_frame, during);
}

Result<void> Worker::pump(Clock::time_point deadline, const FrameHandler& on_frame,
                          const LogSink& on_log, std::string_view during) {
    for (;;) {
        auto done = turn(poll_timeout_ms(deadline), on_frame, on_log, during);
        if (!done) return tl::unexpected(done.error());
        if (*done) return {};
        if (Clock::now() >= deadline) return fail(Errc::timeout, "deadline");
    }
}

void Worker::read_stdio(int which, const std::function<void(const LogLine&)>& on_log) {
    if (!proc_) return;
    const int fd = which == 0 ? proc_->stdout_fd() : proc_->stderr_fd();
    if (fd < 0) return;
    char buf[kReadChunk];
    std::string& pending = line_buf_[which];
    auto emit = [&](std::string line) {
        if (which == 1) {
            stderr_tail_.push_back(line);
            if (stderr_tail_.size() > kStderrTailLines) stderr_tail_.erase(stderr_tail_.begin());
        }
        emit_log(LogLine{which == 0 ? LogLine::Source::stdout_ : LogLine::Source::stderr_,
                         std::move(line), which == 0 ? "info" : "warn"},
                 on_log);
    };
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return;  // EAGAIN
        if (n == 0) {
            if (!pending.empty()) emit(std::exchange(pending, {}));
            if (epoll_) (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
            which == 0 ? proc_->close_stdout() : proc_->close_stderr();
            return;
        }
        std::size_t start = 0;
        const std::string_view chunk(buf, static_cast<std::size_t>(n));
        for (;;) {
            const auto nl = chunk.find('\n', start);
            const auto piece =
                chunk.substr(start, nl == std::string_view::npos ? chunk.npos : nl - start);
            if (pending.size() < limits::kMaxLogLineBytes)
                pending.append(piece.substr(0, limits::kMaxLogLineBytes - pending.size()));
            if (nl == std::string_view::npos) break;
            if (pending.size() >= limits::kMaxLogLineBytes) pending += " [line cut]";
            emit(std::exchange(pending, {}));
            start = nl + 1;
        }
        if (static_cast<std::size_t>(n) < sizeof buf) return;
    }
}

void Worker::reset_budget(std::uint64_t output_limit) {
    log_bytes_ = 0;
    log_capped_ = false;
    output_bytes_ = 0;
    output_limit_ = output_limit;
}

bool Worker::count_output(std::size_t bytes) {
    output_bytes_ += bytes;
    return output_bytes_ <= output_limit_;
}

void Worker::emit_log(LogLine line, const std::function<void(const LogLine&)>& on_log) {
    if (!count_output(line.text.size() + 1) || log_capped_) return;
    log_bytes_ += line.text.size() + 1;
    if (log_bytes_ > limits::kMaxLogBytesPerCall) {
        log_capped_ = true;
        line = LogLine{LogLine::Source::context,
                       "[sandflow: this call's log output passed " +
                           std::to_string(limits::kMaxLogBytesPerCall) +
                           " bytes; the rest is dropped]",
                       "warn"};
    }
    on_log(line);
}

void Worker::read_ready_stdio(const LogSink& on_log) {
    if (!proc_) return;
    epoll_event evs[4];
    const int n = ::epoll_wait(epoll_.get(), evs, 4, 0);
    for (int i = 0; i < n; ++i) {
        if (evs[i].data.u32 == kStdoutTag) read_stdio(0, on_log);
        if (evs[i].data.u32 == kStderrTag) read_stdio(1, on_log);
    }
}

void Worker::drain_stdio(const std::function<void(const LogLine&)>& on_log) {
    read_stdio(0, on_log);
    read_stdio(1, on_log);
}

Error Worker::limit_kill(std::string_view limit, std::uint64_t value, std::string_view during) {
    drain_stdio(default_log_);
    const pid_t pid = proc_ ? proc_->pid() : -1;
    kill();
    return Error(Errc::limit_exceeded,
                 "the sandbox of " + filename_ + " (worker pid " + std::to_string(pid) +
                     ") crossed its " + std::string(limit) + " limit of " + std::to_string(value) +
                     " during " + std::string(during) +
                     "; it was killed and the next call starts a new one with the last "
                     "committed state",
                 {{"limit", std::string(limit)}, {"value", value}});
}

Error Worker::died(std::string_view during) {
    drain_stdio(default_log_);
    const pid_t pid = proc_ ? proc_->pid() : -1;
    const auto status = proc_ ? proc_->kill_and_wait() : sandbox::ExitStatus{};
    proc_.reset();
    json::array tail;
    for (const auto& l : stderr_tail_) tail.emplace_back(l);
    if (!status.limit.empty()) {
        return Error(Errc::limit_exceeded,
                     "the worker (pid " + std::to_string(pid) + ") of " + filename_ +
                         " was killed during " + std::string(during) + ": " + status.describe() +
                         "; the next call starts a new worker with the last committed state",
                     {{"limit", status.limit},
                      {"value", status.limit_value},
                      {"exit", status.describe()},
                      {"stderr_tail", std::move(tail)}});
    }
    return Error(Errc::worker_crashed,
                 "the worker (pid " + std::to_string(pid) + ") of " + filename_ + " died during " +
                     std::string(during) + ": " + status.describe() +
                     "; the next call starts a new worker with the last committed state",
                 {{"exit", status.describe()}, {"stderr_tail", std::move(tail)}});
}

Result<void> Worker::begin_call(CallRequest request, CallEvents events) {
    if (!loaded_) return fail(Errc::internal, "call on a worker that has no script loaded");
    if (call_) return fail(Errc::internal, "a call is already running on this worker");
    if (!proc_) return fail(Errc::worker_crashed, "the worker is not running");
    const ActorLimits call_limits = request.limits.value_or(ActorLimits{});
    ActiveCall c;
    c.timeout = request.timeout.count() > 0
                    ? request.timeout
                    : std::chrono::duration_cast<std::chrono::microseconds>(call_limits.timeout);
    c.start = Clock::now();
    c.deadline = c.start + c.timeout;
    c.id = next_call_id_++;
    c.events = std::move(events);
    if (!c.events.on_log) c.events.on_log = default_log_;
    reset_budget(call_limits.output_bytes);
    decoder_.set_max(static_cast<std::size_t>(call_limits.frame_bytes));

    json::object frame{{"t", "call"},
                       {"id", c.id},
                       {"inputs", std::move(request.inputs)},
                       {"config", std::move(request.config)},
                       {"actor_id", actor_id_},
                       {"timestamp", request.timestamp ? request.timestamp : now_ms()}};
    if (request.state) {
        frame["state"] = std::move(*request.state);
        frame["expires"] = std::move(request.expires);
    }
    call_ = std::move(c);
    sandbox::mark(timeline_, sandbox::StartMark::call_sent);  // before: as for the load
    if (auto sent = queue_frame(frame); !sent) {
        call_.reset();
        return sent;
    }
    return {};
}

Result<bool> Worker::call_frame(json::object& f) {
    ActiveCall& c = *call_;
    const auto* t = string_field(f, "t");
    if (!t) return tl::unexpected(protocol_violation("frame without a type"));
    const auto* fid = f.if_contains("id");
    if (!fid || !fid->is_int64() || fid->get_int64() != c.id)
        return tl::unexpected(protocol_violation("frame for another call"));
    if (*t == "output") {
        const auto* port = string_field(f, "port");
        const auto* data = f.if_contains("data");
        if (!port || !data)
            return tl::unexpected(protocol_violation("output without port or data"));
        // The frame's size stands for the output's: no re-serialisation.
        if (!count_output(decoder_.last_frame_bytes()))
            return tl::unexpected(limit_kill("output_bytes", output_limit_, "the call"));
        if (c.events.on_output) c.events.on_output(*port, *data);
        return false;
    }
    if (*t == "log") {
        const auto* msg = string_field(f, "message");
        const auto* level = string_field(f, "level");
        if (!msg) return tl::unexpected(protocol_violation("log without message"));
        emit_log(LogLine{LogLine::Source::context, std::string(*msg),
                         level ? std::string(*level) : "info"},
                 c.events.on_log);
        return false;
    }
    if (*t == "result") {
        if (!count_output(decoder_.last_frame_bytes()))
            return tl::unexpected(limit_kill("output_bytes", output_limit_, "the call"));
        auto* outputs = f.if_contains("outputs");
        auto* set = f.if_contains("state_set");
        auto* deleted = f.if_contains("state_deleted");
        if (!outputs || !outputs->is_object() || !set || !set->is_object() || !deleted ||
            !deleted->is_array())
            return tl::unexpected(protocol_violation("malformed result"));
        for (const auto& k : deleted->get_array()) {
            if (!k.is_string()) return tl::unexpected(protocol_violation("malformed result"));
            c.result.state_deleted.emplace_back(k.get_string());
        }
        if (auto* exp = f.if_contains("expires_set")) {
            if (!exp->is_object()) return tl::unexpected(protocol_violation("malformed result"));
            c.result.expires_set = std::move(exp->get_object());
        }
        c.result.outputs = std::move(outputs->get_object());
        c.result.state_set = std::move(set->get_object());
        if (timeline_) {
            mark_worker_clock(f, sandbox::StartMark::call_received,
                              sandbox::StartMark::result_sent);
            timeline_->mark(sandbox::StartMark::result_received);
            timeline_ = nullptr;  // the first call's result ends the cold start
        }
        return true;
    }
    if (*t == "error") {
        auto* e = f.if_contains("error");
        c.script_failure = script_error(
            e && e->is_object() ? std::move(e->get_object()) : json::object{}, "the script raised");
        return true;
    }
    return tl::unexpected(protocol_violation("unknown frame type during a call"));
}

void Worker::mark_worker_clock(const json::object& frame, sandbox::StartMark a_mark,
                               sandbox::StartMark b_mark) {
    if (!timeline_) return;
    const auto* clock = frame.if_contains("clock");
    if (!clock || !clock->is_array() || clock->get_array().size() != 2) return;
    const auto& a = clock->get_array();
    if (!a[0].is_int64() || !a[1].is_int64()) return;
    // A worker whose clock is not the host's (gVisor's sentry keeps its own) reports times
    // outside this start: they are left out.
    const std::int64_t from = a[0].get_int64(), to = a[1].get_int64();
    if (from < timeline_begin_ns_ || to < from || to > sandbox::monotonic_ns()) return;
    timeline_->mark_at(a_mark, a[0].get_int64());
    timeline_->mark_at(b_mark, a[1].get_int64());
}

std::optional<Result<CallResult>> Worker::advance(int timeout_ms) {
    if (!call_) return Result<CallResult>(fail(Errc::internal, "no call is running"));
    auto done = turn(
        timeout_ms, [this](json::object& f) { return call_frame(f); }, call_->events.on_log,
        "the call");
    if (done && !*done) return std::nullopt;
    ActiveCall c = std::move(*call_);
    call_.reset();
    if (!done) return Result<CallResult>(tl::unexpected(done.error()));
    read_ready_stdio(c.events.on_log);
    reset_budget(output_limit_);  // the time until the next call has its own
    if (c.script_failure) return Result<CallResult>(tl::unexpected(std::move(*c.script_failure)));
    c.result.duration =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - c.start);
    return Result<CallResult>(std::move(c.result));
}

Result<CallResult> Worker::expire() {
    if (!call_) return fail(Errc::internal, "no call is running");
    ActiveCall c = std::move(*call_);
    call_.reset();
    drain_stdio(c.events.on_log);
    kill();
    return fail(
        Errc::timeout,
        "the call exceeded its wall-clock limit of " + format_duration(c.timeout) +
            "; the worker was killed and the next call starts a new one with the "
            "last committed state",
        {{"limit", "timeout"},
         {"value_ms", std::chrono::duration_cast<std::chrono::milliseconds>(c.timeout).count()}});
}

Result<void> Worker::poll_idle() {
    if (call_) return fail(Errc::internal, "poll_idle while a call is running");
    if (!proc_) return fail(Errc::worker_crashed, "the worker is not running");
    auto done = turn(
        0,
        [](json::object&) -> Result<bool> {
            return tl::unexpected(protocol_violation(
                "a frame between calls, such as an output sent after its call ended"));
        },
        default_log_, "the time between calls");
    if (!done) return tl::unexpected(done.error());
    return {};
}

Clock::time_point Worker::call_deadline() const {
    return call_ ? call_->deadline : Clock::time_point::max();
}

Result<CallResult> Worker::call(const CallRequest& request, const CallEvents& events) {
    if (auto ok = begin_call(request, events); !ok) return tl::unexpected(ok.error());
    return wait();
}

Result<CallResult> Worker::wait() {
    if (!call_) return fail(Errc::internal, "no call is running");
    for (;;) {
        const auto deadline = call_->deadline;
        if (auto r = advance(poll_timeout_ms(deadline))) return std::move(*r);
        if (Clock::now() >= deadline) return expire();
    }
}

}  // namespace sandflow::runtime
