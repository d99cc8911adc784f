// What the three files of runtime::Worker share (worker.cpp: start and load; worker_call.cpp:
// a call's frames and end; worker_channel.cpp: the channel, the pipes and the budgets):
// reading a frame's fields and the errors a frame can be. Internal to the runtime layer.
#pragma once

#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/json.hpp"
#include "runtime/worker.hpp"

namespace sandflow::runtime::worker_detail {

// How long epoll may wait for `deadline`: 0 once it has passed, at most a minute.
inline int poll_timeout_ms(Clock::time_point deadline) {
    const auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) return 0;
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return ms > 60'000 ? 60'000 : static_cast<int>(ms);
}

inline Error protocol_violation(std::string_view what) {
    return Error(Errc::worker_crashed,
                 "the worker broke the frame protocol (" + std::string(what) +
                     "); it was killed and the next call starts a new one",
                 {{"reason", "protocol_violation"}});
}

inline const json::string* string_field(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    return v && v->is_string() ? &v->get_string() : nullptr;
}

// The script's error as the worker reported it (`info`: type, message, traceback), for a
// failed load or call: "ValueError: bad input (at double.py:12 in process)". Defined in
// worker_call.cpp.
Error script_error(json::object info, std::string_view during);

}  // namespace sandflow::runtime::worker_detail
