// The host side of the worker protocol (docs/worker-protocol.md): starts a worker through
// a sandbox backend, loads one script into it, and drives calls over the frame channel
// while capturing the script's stdout/stderr as log lines.
//
// A Worker is used by one thread at a time; calls are strictly sequential, driven either
// by call(), which blocks, or by an event loop through begin_call() and advance(). Any protocol
// violation, death or deadline kills the worker: after that every call fails and the
// owner (runtime::Instance) starts a new one.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actor/metadata.hpp"
#include "core/error.hpp"
#include "core/frame.hpp"
#include "core/json.hpp"
#include "runtime/actor_limits.hpp"
#include "sandbox/backend.hpp"

namespace sandflow::runtime {

using Clock = std::chrono::steady_clock;

struct LogLine {
    enum class Source { stdout_, stderr_, context } source;  // print(), stderr, context.log()
    std::string text;
    std::string level = "info";
};

struct CallRequest {
    json::object inputs;
    json::object config;
    // When set, the call runs on this state instead of the committed one, with these
    // expiry times of its keys ({key: ms since the epoch}).
    std::optional<json::object> state;
    json::object expires;
    std::int64_t timestamp = 0;  // ms since the epoch; 0 = now
    // The call's wall clock, output bytes and frame size come from here (the sandbox's
    // limits are runtime::Instance's business); unset: the defaults.
    std::optional<ActorLimits> limits;
    // When non-zero, the wall clock instead of limits->timeout.
    std::chrono::microseconds timeout = std::chrono::microseconds(0);
};

struct CallResult {
    json::object outputs;  // the dict/object the script returned
    json::object state_set;
    std::vector<std::string> state_deleted;
    // New expiry times: key -> ms since the epoch, or null for none. A key written keeps
    // its time unless it is named here.
    json::object expires_set;
    std::chrono::microseconds duration{0};
};

// Called, on the calling thread, as things arrive during a call.
struct CallEvents {
    std::function<void(std::string_view port, const json::value& data)> on_output;
    std::function<void(const LogLine&)> on_log;
    // runtime::Instance calls it with the worker's pid once the worker is ready and just
    // before the call is sent (after any restart); returning false stops the call there,
    // unsent, as Errc::cancelled. A canceller
    // that kills this pid from then on stops the call that runs.
    std::function<bool(pid_t worker_pid)> on_start;
};

struct LoadSpec {
    actor::ActorMetadata metadata;
    std::string source;
    std::string filename;  // as the script's tracebacks name it
    std::string actor_id;
    json::object state;                          // committed state to start from
    json::object expires;                        // its keys' expiry times {key: ms}
    std::function<void(const LogLine&)> on_log;  // output outside calls (start-up, load)
    // The package sets the worker's sandbox gets (sandbox::SharedDir) and the interpreter
    // searches after its own library; a worker from spawn() must have been given the same.
    std::vector<sandbox::SharedDir> packages;
};

class Worker {
  public:
    // Starts a worker with no script yet: the sandbox is up, the interpreter and SDK are
    // loaded and the hello has arrived (what the warm pool keeps). Errc::sandbox_unavailable
    // or Errc::worker_crashed when it cannot start. With a `timeline`, the start, the load
    // and the first call mark their steps on it (the worker reports its own); it must
    // outlive the first call's end.
    static Result<std::unique_ptr<Worker>> spawn(
        sandbox::Backend& backend, actor::Language language,
        std::chrono::milliseconds start_timeout, std::function<void(const LogLine&)> on_log = {},
        std::optional<sandbox::SandboxLimits> limits = std::nullopt,
        sandbox::StartTimeline* timeline = nullptr, std::vector<sandbox::SharedDir> packages = {});
    // Loads the one script this worker will ever run; errors as for start(). A worker
    // whose load failed must be discarded.
    Result<void> load(const LoadSpec& spec, std::chrono::milliseconds timeout);

    // spawn() then load(). A script that fails to load is Errc::script
    // (data: type, message, traceback); a worker that cannot start is
    // Errc::sandbox_unavailable or Errc::worker_crashed.
    static Result<std::unique_ptr<Worker>> start(
        sandbox::Backend& backend, const LoadSpec& spec, std::chrono::milliseconds start_timeout,
        std::optional<sandbox::SandboxLimits> limits = std::nullopt,
        sandbox::StartTimeline* timeline = nullptr);
    ~Worker();

    // One call. Errc::script when the script raised (the worker lives on); Errc::timeout,
    // Errc::worker_crashed or Errc::limit_exceeded when the worker had to be killed.
    // Blocks until the call ends: begin_call(), then wait().
    Result<CallResult> call(const CallRequest& request, const CallEvents& events);

    // The same call without blocking, for an event loop. begin_call() sends the request
    // (what the channel does not take at once goes as the worker reads). Then, whenever
    // wait_fd() polls readable, advance() takes in what is there and hands it to the
    // events; it returns the call's result once the call has ended, nullopt while it runs.
    // At call_deadline(), expire() kills the worker and returns Errc::timeout. One call at
    // a time; the events run on the thread that calls advance().
    Result<void> begin_call(CallRequest request, CallEvents events);
    // Waits up to `timeout_ms` (0: not at all) for the worker first.
    std::optional<Result<CallResult>> advance(int timeout_ms = 0);
    Result<CallResult> expire();
    // Blocks until the call begun ends (advance and expire in a loop).
    Result<CallResult> wait();
    // Polls readable when the worker has something for advance(): a level-triggered epoll
    // set of the channel, stdout, stderr and the sandbox's limit events, owned by the
    // worker and valid until it is destroyed (it stays valid, and silent, after a kill).
    int wait_fd() const { return epoll_.get(); }
    // The running call's deadline; time_point::max() when none runs.
    Clock::time_point call_deadline() const;

    // Between calls, when wait_fd() polls readable: takes in what the worker did since its
    // last call (or its load) ended, without waiting. What it printed goes to the load's log
    // sink, under a budget of its own for each time between calls: the log cap and the
    // output_bytes limit of the call before (the default before the first call). A frame
    // (the protocol allows none between calls), a crossed limit, or the budget spent kills
    // the worker and is the error; so is finding it dead (Errc::worker_crashed).
    Result<void> poll_idle();

    // False once the worker has been killed or has exited, even while idle between calls.
    bool alive();
    pid_t pid() const;
    // Unique among the workers this process has made: tells a new worker from an old one
    // even where a descriptor number or an address was reused.
    std::uint64_t serial() const { return serial_; }
    const std::string& runtime_version() const { return runtime_version_; }
    actor::Language language() const { return language_; }
    // The package sets its sandbox was given (LoadSpec::packages).
    const std::vector<sandbox::SharedDir>& packages() const { return packages_; }
    // The limits the worker's sandbox enforces; nullptr when it enforces none.
    const sandbox::SandboxLimits* sandbox_limits() const;
    // Process::update_limits on the worker's sandbox: false when a new one is needed.
    Result<bool> update_sandbox_limits(const sandbox::SandboxLimits& limits);
    // Kills the worker; later calls fail.
    void kill();

  private:
    Worker(std::unique_ptr<sandbox::Process> proc, std::function<void(const LogLine&)> on_log);
    // spawn(), with `preload` (when set) sent right behind the start, before the hello.
    static Result<std::unique_ptr<Worker>> spawn_impl(
        sandbox::Backend& backend, actor::Language language,
        std::chrono::milliseconds start_timeout, std::function<void(const LogLine&)> on_log,
        std::optional<sandbox::SandboxLimits> limits, sandbox::StartTimeline* timeline,
        std::vector<sandbox::SharedDir> packages, const LoadSpec* preload);
    // load() in two halves: the frame, then its answer.
    Result<void> send_load(const LoadSpec& spec);
    Result<void> await_loaded(const LoadSpec& spec, std::chrono::milliseconds timeout);

    using FrameHandler = std::function<Result<bool>(json::object&)>;
    using LogSink = std::function<void(const LogLine&)>;
    struct ActiveCall {
        std::int64_t id = 0;
        CallEvents events;
        CallResult result;
        std::optional<Error> script_failure;
        Clock::time_point start, deadline;
        std::chrono::microseconds timeout{0};
    };
    // epoll_event.data of the descriptors in epoll_.
    static constexpr std::uint32_t kChannelTag = 0, kStdoutTag = 1, kStderrTag = 2, kLimitTag = 3;

    Result<void> watch_descriptors();
    void watch_channel_writable(bool on);
    // One step of an exchange: waits up to `timeout_ms` for the worker, sends what is
    // queued as the channel takes it, reads what is ready, and hands whole frames to
    // `on_frame` until it returns true (the exchange is over: returns true). An error
    // ends the exchange; the worker was killed unless it was a script's own error.
    Result<bool> turn(int timeout_ms, const FrameHandler& on_frame, const LogSink& on_log,
                      std::string_view during);
    // Turns until `on_frame` ends the exchange or the deadline passes (Errc::timeout).
    Result<void> pump(Clock::time_point deadline, const FrameHandler& on_frame,
                      const LogSink& on_log, std::string_view during);
    Result<bool> deliver_frames(const FrameHandler& on_frame, std::string_view during);
    Result<bool> call_frame(json::object& frame);
    // Marks the worker's own clock readings (a frame's "clock": [a, b]) as `a_mark`, `b_mark`.
    void mark_worker_clock(const json::object& frame, sandbox::StartMark a_mark,
                           sandbox::StartMark b_mark);
    // Queues a frame (checked against the frame size limit) or raw bytes and sends what
    // the channel takes now; turn() sends the rest.
    Result<void> queue_frame(const json::value& frame);
    Result<void> queue_send(std::string bytes);
    Result<void> flush();
    void drain_stdio(const LogSink& on_log);
    // The same for a worker that lives on: one look at epoll_ instead of a read per pipe.
    // What the script wrote before its last frame has arrived by then (the pipes are
    // written first).
    void read_ready_stdio(const LogSink& on_log);
    void read_stdio(int which, const LogSink& on_log);
    // Every log line of a call passes here: the per-call byte cap applies to all sources.
    void emit_log(LogLine line, const LogSink& on_log);
    // Counts a call's output toward its output_bytes limit; false once it is crossed.
    bool count_output(std::size_t bytes);
    // Starts the output and log budget of a call, or of the time between calls.
    void reset_budget(std::uint64_t output_limit);
    Error died(std::string_view during);
    // Kills the sandbox for crossing `limit` and says so.
    Error limit_kill(std::string_view limit, std::uint64_t value, std::string_view during);

    std::unique_ptr<sandbox::Process> proc_;
    sandbox::UniqueFd epoll_;
    bool watching_writable_ = false;
    std::string out_;  // queued request bytes; those before out_off_ are sent
    std::size_t out_off_ = 0;
    std::optional<ActiveCall> call_;
    const std::uint64_t serial_;
    std::string actor_id_, filename_, runtime_version_;
    std::function<void(const LogLine&)> default_log_;
    FrameDecoder decoder_;
    std::string line_buf_[2];
    std::vector<std::string> stderr_tail_;
    std::size_t log_bytes_ = 0;
    bool log_capped_ = false;
    std::uint64_t output_bytes_ = 0;  // this call's, toward output_limit_
    std::uint64_t output_limit_ = UINT64_MAX;
    std::int64_t next_call_id_ = 1;
    actor::Language language_ = actor::Language::python;
    bool loaded_ = false;
    std::vector<sandbox::SharedDir> packages_;
    std::vector<std::string> package_paths_;      // where the worker finds them
    sandbox::StartTimeline* timeline_ = nullptr;  // until the first call's result
    std::int64_t timeline_begin_ns_ = 0;          // when spawn() began
};

}  // namespace sandflow::runtime
