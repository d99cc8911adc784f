// runtime::Worker's calls: the call frame, the frames a call answers with (outputs, logs,
// the result or the script's error), its end, its deadline, and the time between calls.
#include "core/duration.hpp"
#include "runtime/worker.hpp"
#include "runtime/worker_detail.hpp"

namespace sandflow::runtime {

using worker_detail::poll_timeout_ms;
using worker_detail::protocol_violation;
using worker_detail::script_error;
using worker_detail::string_field;

namespace {

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

// "ValueError: bad input (at double.py:12 in process)"
Error worker_detail::script_error(json::object info, std::string_view during) {
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
