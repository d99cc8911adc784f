#include "core/error.hpp"

#include <cstring>

namespace sandflow {

std::string_view errc_name(Errc code) {
    switch (code) {
        case Errc::invalid_argument:
            return "invalid_argument";
        case Errc::requirement:
            return "requirement";
        case Errc::metadata:
            return "metadata";
        case Errc::script:
            return "script";
        case Errc::worker_crashed:
            return "worker_crashed";
        case Errc::timeout:
            return "timeout";
        case Errc::limit_exceeded:
            return "limit_exceeded";
        case Errc::sandbox_unavailable:
            return "sandbox_unavailable";
        case Errc::io:
            return "io";
        case Errc::state_store:
            return "state_store";
        case Errc::state_conflict:
            return "state_conflict";
        case Errc::not_found:
            return "not_found";
        case Errc::method_not_found:
            return "method_not_found";
        case Errc::overloaded:
            return "overloaded";
        case Errc::cancelled:
            return "cancelled";
        case Errc::unauthorized:
            return "unauthorized";
        case Errc::shutting_down:
            return "shutting_down";
        case Errc::internal:
            return "internal";
    }
    return "internal";
}

std::optional<Errc> errc_from_name(std::string_view name) {
    for (Errc c : kAllErrcs)
        if (errc_name(c) == name) return c;
    return std::nullopt;
}

boost::json::object Error::to_json() const {
    boost::json::object o;
    o["code"] = errc_name(code);
    o["message"] = message;
    if (!data.empty()) o["data"] = data;
    return o;
}

Error system_error(std::string_view what, int err) {
    std::string msg(what);
    msg += ": ";
    msg += std::strerror(err);
    return Error(Errc::io, std::move(msg), {{"errno", err}});
}

}  // namespace sandflow
