// The methods' params (docs/protocol.md), read and checked before anything runs: a param
// of the wrong shape is a -32602 error that names it. Each parse_* checks its fields in a
// fixed order and reports the first that is wrong.
#pragma once

#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/json.hpp"
#include "runtime/actor_limits.hpp"
#include "runtime/worker.hpp"

namespace sandflow::server {

// The instance a request names when it names none.
inline constexpr std::string_view kDefaultInstance = "default";

// Params access with -32602 errors that name the field.
struct Params {
    const json::object* o;

    // Null params are an empty object; anything else but an object is an error.
    static Result<Params> of(const json::value& params);
    const json::value* find(std::string_view k) const { return o->if_contains(k); }
    Result<std::string> str(std::string_view k, bool required, std::size_t max,
                            std::string dflt = {}) const;
    // An absent or null field is an empty object.
    Result<json::object> obj(std::string_view k) const;
};

// actor_not_found: the actor, or one instance of it (`instance_id` not empty), is not loaded.
Error not_found(std::string_view component, std::string_view instance_id);

struct LoadParams {
    // Exactly one of file_path and source; language (and filename) go with source.
    std::string file_path, source, language, filename;
    std::string instance_id;
    json::object state;
    bool has_state = false;  // params.state was given: it replaces the instance's state
    runtime::LimitOverrides limits;
};
Result<LoadParams> parse_load(const Params& p);

struct ProcessParams {
    std::string actor_id, instance_id;
    runtime::CallRequest req;  // inputs, config, state, timestamp, timeout
    runtime::LimitOverrides limits;
    std::string call_id;  // a replay of the instance's last committed call is not run again
};
Result<ProcessParams> parse_process(const Params& p);

struct UnloadParams {
    std::string actor_id;
    std::string instance_id;  // empty: every instance, and the actor itself
};
Result<UnloadParams> parse_unload(const Params& p);

Result<std::string> parse_actor_id(const Params& p);
// cancel's params.id: the id (string or integer) of a call in flight on the connection.
Result<json::value> parse_cancel_id(const Params& p);

}  // namespace sandflow::server
