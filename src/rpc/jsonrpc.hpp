// JSON-RPC 2.0 codec of the runtime server's wire protocol (docs/protocol.md). Pure
// functions over Boost.JSON: no sockets, so the server, the client library, the tests and
// the fuzzer all share exactly this code.
//
// Every message is checked against named limits (limits::kMaxRpc*) before it is parsed
// or before its parts are copied.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/error.hpp"
#include "core/json.hpp"
#include "rpc/rpc_limits.hpp"

namespace sandflow::rpc {

inline constexpr std::string_view kVersion = "2.0";

// Standard JSON-RPC 2.0 codes.
inline constexpr int kParseError = -32700;
inline constexpr int kInvalidRequest = -32600;
inline constexpr int kMethodNotFound = -32601;
inline constexpr int kInvalidParams = -32602;
inline constexpr int kInternalError = -32603;

// Sandflow's application codes (-32000..-32099). Stable: clients switch on them.
enum class AppCode : int {
    actor_not_found = -32001,
    script_error = -32002,
    timeout = -32003,
    limit_exceeded = -32004,
    sandbox_unavailable = -32005,
    overloaded = -32006,
    cancelled = -32007,
    unauthorized = -32008,
    worker_crashed = -32009,
    metadata_error = -32010,
    shutting_down = -32011,
    state_store = -32012,
    state_conflict = -32013,
    requirement = -32014,
};

// A JSON-RPC error object. `data` always holds "reason" (a stable lower-case name) and
// "errc" (the sandflow::Errc name), plus the error's own details.
struct RpcError {
    int code = kInternalError;
    std::string message;
    json::object data;
    json::object to_json() const;
};

// How one Errc travels on the wire: its JSON-RPC code and the data.reason it gets when
// the error names none of its own (docs/errors.md has the table). Every code has one;
// io and internal share -32603 ("internal"), data.errc tells them apart.
struct WireCode {
    int code = kInternalError;
    std::string_view reason;
};
WireCode wire_code(Errc code);

// The one mapping from sandflow::Error to the wire: the code and reason of wire_code(),
// data.errc = errc_name(e.code), and e.data's details.
RpcError to_rpc_error(const Error& e);
// And back, for clients: the Errc of the code when one code has it alone, else the one
// data.errc names (-32603: io or internal), else invalid_argument for the protocol's own
// codes (-32700, -32600) and internal for codes this client does not know.
Error from_rpc_error(int code, std::string message, json::object data);

struct Request {
    json::value id;                // string or integer; null for notifications
    bool is_notification = false;  // the message had no "id" member
    std::string method;
    json::value params;  // object, array, or null when absent
};

// One entry of a decoded message: a valid request, or the error response to send for an
// invalid one (already carrying the right id).
using Entry = std::variant<Request, json::object>;

struct Decoded {
    bool batch = false;
    std::vector<Entry> entries;  // one entry unless batch
};

// Decodes one WebSocket text message. Never fails: malformed input becomes an error
// response entry (-32700 with id null for unparsable JSON, -32600 for a bad shape, -32004
// with data.limit for a crossed limit).
Decoded decode(std::string_view text, std::size_t max_bytes = limits::kMaxRpcMessageBytes);

// Response and notification builders.
json::object make_result(const json::value& id, json::value result);
json::object make_error(const json::value& id, const RpcError& error);
json::object make_notification(std::string_view method, json::object params);
std::string encode(const json::value& message);  // compact text (floats stay floats)

// What a client receives: a response (to one of its ids) or a notification.
struct Response {
    json::value id;
    bool ok = false;
    json::value result;  // when ok
    RpcError error;      // when !ok
};
struct Notification {
    std::string method;
    json::value params;
};
using Incoming = std::variant<Response, Notification>;

// Decodes what the server sent: one message or a batch (responses in batch order).
Result<std::vector<Incoming>> decode_incoming(std::string_view text,
                                              std::size_t max_bytes = limits::kMaxRpcMessageBytes);

json::object make_request(const json::value& id, std::string_view method, json::value params);

}  // namespace sandflow::rpc
