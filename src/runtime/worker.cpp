// runtime::Worker's start: spawning the sandbox, the hello, loading the script, and what a
// started worker answers about itself. A call's frames are in worker_call.cpp; the channel,
// the pipes and the output budgets in worker_channel.cpp.
#include "runtime/worker.hpp"

#include <atomic>
#include <mutex>

#include "actor/sdk.hpp"
#include "core/duration.hpp"
#include "runtime/runtime_limits.hpp"
#include "runtime/worker_detail.hpp"
#include "sandflow/value.hpp"

namespace sandflow::runtime {

using worker_detail::protocol_violation;
using worker_detail::script_error;
using worker_detail::string_field;

namespace {

constexpr int kProtocolVersion = 1;

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

}  // namespace sandflow::runtime
