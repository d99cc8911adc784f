// The host side of the worker protocol (docs/worker-protocol.md): starts a worker through
// a sandbox backend, loads one script into it, and drives calls over the frame channel
// while capturing the script's stdout/stderr as log lines.
//
// A Worker is used by one thread at a time; calls are strictly sequential. Any protocol
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
    // When set, the call runs on this state instead of the committed one.
    std::optional<json::object> state;
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
    std::chrono::microseconds duration{0};
};

// Called, on the calling thread, as things arrive during a call.
struct CallEvents {
    std::function<void(std::string_view port, const json::value& data)> on_output;
    std::function<void(const LogLine&)> on_log;
    // runtime::Instance calls it with the worker's pid once the worker is ready and just
    // before the call is sent (after any restart); returning false stops the call there,
    // unsent, as cancelled (Errc::worker_crashed, data.reason "cancelled"). A canceller
    // that kills this pid from then on stops the call that runs.
    std::function<bool(pid_t worker_pid)> on_start;
};

struct LoadSpec {
    actor::ActorMetadata metadata;
    std::string source;
    std::string filename;  // as the script's tracebacks name it
    std::string actor_id;
    json::object state;                          // committed state to start from
    std::function<void(const LogLine&)> on_log;  // output outside calls (start-up, load)
};

class Worker {
  public:
    // Starts a worker with no script yet: the sandbox is up, the interpreter and SDK are
    // loaded and the hello has arrived (what the warm pool keeps). Errc::sandbox_unavailable
    // or Errc::worker_crashed when it cannot start.
    static Result<std::unique_ptr<Worker>> spawn(
        sandbox::Backend& backend, actor::Language language,
        std::chrono::milliseconds start_timeout, std::function<void(const LogLine&)> on_log = {},
        std::optional<sandbox::SandboxLimits> limits = std::nullopt);
    // Loads the one script this worker will ever run; errors as for start(). A worker
    // whose load failed must be discarded.
    Result<void> load(const LoadSpec& spec, std::chrono::milliseconds timeout);

    // spawn() then load(). A script that fails to load is Errc::script
    // (data: type, message, traceback); a worker that cannot start is
    // Errc::sandbox_unavailable or Errc::worker_crashed.
    static Result<std::unique_ptr<Worker>> start(
        sandbox::Backend& backend, const LoadSpec& spec, std::chrono::milliseconds start_timeout,
        std::optional<sandbox::SandboxLimits> limits = std::nullopt);
    ~Worker();

    // One call. Errc::script when the script raised (the worker lives on); Errc::timeout,
    // Errc::worker_crashed or Errc::limit_exceeded when the worker had to be killed.
    Result<CallResult> call(const CallRequest& request, const CallEvents& events);

    // False once the worker has been killed or has exited, even while idle between calls.
    bool alive();
    pid_t pid() const;
    const std::string& runtime_version() const { return runtime_version_; }
    actor::Language language() const { return language_; }
    // The limits the worker's sandbox enforces; nullptr when it enforces none.
    const sandbox::SandboxLimits* sandbox_limits() const;
    // Process::update_limits on the worker's sandbox: false when a new one is needed.
    Result<bool> update_sandbox_limits(const sandbox::SandboxLimits& limits);
    // Kills the worker; later calls fail.
    void kill();

  private:
    Worker(std::unique_ptr<sandbox::Process> proc, std::function<void(const LogLine&)> on_log);

    // Reads the channel and stdio until `on_frame` returns true, the deadline passes, or
    // the worker dies. Returns the error that ended the wait.
    Result<void> pump(Clock::time_point deadline,
                      const std::function<Result<bool>(json::object&)>& on_frame,
                      const std::function<void(const LogLine&)>& on_log, std::string_view during);
    // Writes a whole frame; Errc::timeout when the worker does not read it by `deadline`.
    Result<void> send(const json::value& frame, Clock::time_point deadline);
    Result<void> send_bytes(std::string_view bytes, Clock::time_point deadline);
    void drain_stdio(const std::function<void(const LogLine&)>& on_log);
    void read_stdio(int which, const std::function<void(const LogLine&)>& on_log);
    // Every log line of a call passes here: the per-call byte cap applies to all sources.
    void emit_log(LogLine line, const std::function<void(const LogLine&)>& on_log);
    // Counts a call's output toward its output_bytes limit; false once it is crossed.
    bool count_output(std::size_t bytes);
    Error died(std::string_view during);
    // Kills the sandbox for crossing `limit` and says so.
    Error limit_kill(std::string_view limit, std::uint64_t value, std::string_view during);

    std::unique_ptr<sandbox::Process> proc_;
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
};

}  // namespace sandflow::runtime
