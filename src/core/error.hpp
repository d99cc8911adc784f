// The error model shared by every layer (docs/errors.md).
//
// Fallible functions return Result<T> (tl::expected<T, Error>); exceptions are not used
// across layer boundaries. An Error carries a stable code, a one-line message that says
// what went wrong, where, and how to fix it, and a JSON `data` object with the structured
// details (a script's traceback, the limit that was crossed, a file:line:column).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <boost/json/object.hpp>
#include <tl/expected.hpp>

namespace sandflow {

enum class Errc {
    invalid_argument,     // the caller passed something malformed (usage, bad JSON, bad port)
    metadata,             // an actor script's declaration is missing or malformed
    requirement,          // a package an actor requires is not in its package sets
    script,               // the actor script raised; data holds type, message, traceback
    worker_crashed,       // the worker process died or broke the frame protocol
    timeout,              // a wall-clock deadline passed; the worker was killed
    limit_exceeded,       // a named limit was crossed; data.limit names it
    sandbox_unavailable,  // the backend cannot start sandboxes on this host
    io,                   // an operating-system call failed
    state_store,          // the state store failed (down, full, unreadable); data.store names it
    state_conflict,       // another server committed the instance's state first
    not_found,            // the actor or instance named is not loaded on the server
    method_not_found,     // the server has no method of that name
    overloaded,           // the server refused the call: too many in flight or connected
    cancelled,            // the call was cancelled (by the cancel method or its client)
    unauthorized,         // the server refused the token or the origin
    shutting_down,        // the server is shutting down; retry on another one
    internal,             // a bug in Sandflow itself
};

// Every code, in declaration order: for tables and tests that must cover them all.
inline constexpr Errc kAllErrcs[] = {
    Errc::invalid_argument,
    Errc::metadata,
    Errc::requirement,
    Errc::script,
    Errc::worker_crashed,
    Errc::timeout,
    Errc::limit_exceeded,
    Errc::sandbox_unavailable,
    Errc::io,
    Errc::state_store,
    Errc::state_conflict,
    Errc::not_found,
    Errc::method_not_found,
    Errc::overloaded,
    Errc::cancelled,
    Errc::unauthorized,
    Errc::shutting_down,
    Errc::internal,
};

// Stable lower-case name of a code, used on the wire and in logs.
std::string_view errc_name(Errc code);
// The code named `name` (errc_name's inverse); nullopt for a name no code has.
std::optional<Errc> errc_from_name(std::string_view name);

struct Error {
    Errc code = Errc::internal;
    std::string message;
    boost::json::object data;

    Error() = default;
    Error(Errc c, std::string msg, boost::json::object d = {})
        : code(c), message(std::move(msg)), data(std::move(d)) {}

    // {"code": "<errc name>", "message": ..., "data": {...}}
    boost::json::object to_json() const;
};

template <class T>
using Result = tl::expected<T, Error>;

inline tl::unexpected<Error> fail(Errc code, std::string message, boost::json::object data = {}) {
    return tl::unexpected<Error>(Error(code, std::move(message), std::move(data)));
}

// An Error from errno after a failed system call: "<what>: <strerror>".
Error system_error(std::string_view what, int err);

}  // namespace sandflow
