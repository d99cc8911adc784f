#include "rpc/jsonrpc.hpp"
#include "rpc/rpc_limits.hpp"

namespace sandflow::rpc {

namespace {

json::object with_reason(json::object data, std::string_view reason, Errc errc) {
    if (!data.contains("reason")) data["reason"] = reason;
    data["errc"] = errc_name(errc);
    return data;
}

RpcError make_rpc(int code, std::string message, json::object data, std::string_view reason,
                  Errc errc) {
    return {code, std::move(message), with_reason(std::move(data), reason, errc)};
}

json::object error_entry(const json::value& id, int code, std::string message,
                         std::string_view reason, json::object data = {}) {
    return make_error(
        id, make_rpc(code, std::move(message), std::move(data), reason, Errc::invalid_argument));
}

// A valid id: string (length-capped) or integer. Anything else makes the request invalid.
bool valid_id(const json::value& id) {
    if (id.is_string()) return id.get_string().size() <= limits::kMaxRpcIdBytes;
    return id.is_int64() || id.is_uint64() || id.is_null();
}

Entry decode_one(const json::value& v) {
    if (!v.is_object())
        return error_entry(nullptr, kInvalidRequest, "a request must be a JSON object",
                           "invalid_request");
    const auto& o = v.get_object();
    Request r;
    const json::value* id = o.if_contains("id");
    if (id && !valid_id(*id))
        return error_entry(nullptr, kInvalidRequest,
                           "\"id\" must be a string (at most " +
                               std::to_string(limits::kMaxRpcIdBytes) +
                               " bytes), an integer or null",
                           "invalid_request");
    r.is_notification = id == nullptr;
    if (id) r.id = *id;
    const json::value* ver = o.if_contains("jsonrpc");
    if (!ver || !ver->is_string() || ver->get_string() != kVersion)
        return error_entry(r.id, kInvalidRequest, "\"jsonrpc\" must be \"2.0\"", "invalid_request");
    const json::value* method = o.if_contains("method");
    if (!method || !method->is_string())
        return error_entry(r.id, kInvalidRequest, "\"method\" must be a string", "invalid_request");
    if (method->get_string().size() > limits::kMaxRpcMethodBytes)
        return error_entry(
            r.id, kInvalidRequest,
            "\"method\" is longer than " + std::to_string(limits::kMaxRpcMethodBytes) + " bytes",
            "invalid_request");
    r.method = std::string(method->get_string());
    if (const json::value* p = o.if_contains("params")) {
        if (!p->is_object() && !p->is_array())
            return error_entry(r.id, kInvalidRequest,
                               "\"params\" must be an object or an array when present",
                               "invalid_request");
        r.params = *p;
    }
    return r;
}

Result<json::value> parse_limited(std::string_view text, std::size_t max_bytes) {
    if (text.size() > max_bytes)
        return fail(Errc::limit_exceeded,
                    "message of " + std::to_string(text.size()) + " bytes is over the limit of " +
                        std::to_string(max_bytes) + " bytes",
                    {{"limit", "kMaxRpcMessageBytes"}, {"value", text.size()}, {"max", max_bytes}});
    json::parse_options opts;
    opts.max_depth = limits::kMaxRpcDepth;
    std::error_code ec;
    json::value v = json::parse(text, ec, {}, opts);
    if (ec == json::error::too_deep)
        return fail(Errc::limit_exceeded,
                    "message nests deeper than " + std::to_string(limits::kMaxRpcDepth) + " levels",
                    {{"limit", "kMaxRpcDepth"}, {"max", limits::kMaxRpcDepth}});
    if (ec) return fail(Errc::invalid_argument, "invalid JSON: " + ec.message());
    return v;
}

}  // namespace

json::object RpcError::to_json() const {
    return {{"code", code}, {"message", message}, {"data", data}};
}

std::string_view app_code_reason(AppCode code) {
    switch (code) {
        case AppCode::actor_not_found:
            return "actor_not_found";
        case AppCode::script_error:
            return "script_error";
        case AppCode::timeout:
            return "timeout";
        case AppCode::limit_exceeded:
            return "limit_exceeded";
        case AppCode::sandbox_unavailable:
            return "sandbox_unavailable";
        case AppCode::overloaded:
            return "overloaded";
        case AppCode::cancelled:
            return "cancelled";
        case AppCode::unauthorized:
            return "unauthorized";
        case AppCode::worker_crashed:
            return "worker_crashed";
        case AppCode::metadata_error:
            return "metadata_error";
        case AppCode::shutting_down:
            return "shutting_down";
        case AppCode::state_store:
            return "state_store";
        case AppCode::state_conflict:
            return "state_conflict";
        case AppCode::requirement:
            return "requirement";
    }
    return "internal";
}

Error app_error(AppCode code, std::string message, json::object data) {
    // The Errc that describes the condition best for code that does not speak RPC.
    Errc errc = Errc::internal;
    switch (code) {
        case AppCode::actor_not_found:
        case AppCode::unauthorized:
            errc = Errc::invalid_argument;
            break;
        case AppCode::script_error:
            errc = Errc::script;
            break;
        case AppCode::timeout:
            errc = Errc::timeout;
            break;
        case AppCode::limit_exceeded:
        case AppCode::overloaded:
            errc = Errc::limit_exceeded;
            break;
        case AppCode::sandbox_unavailable:
            errc = Errc::sandbox_unavailable;
            break;
        case AppCode::cancelled:
        case AppCode::worker_crashed:
            errc = Errc::worker_crashed;
            break;
        case AppCode::metadata_error:
            errc = Errc::metadata;
            break;
        case AppCode::shutting_down:
            errc = Errc::io;
            break;
        case AppCode::state_store:
            errc = Errc::state_store;
            break;
        case AppCode::state_conflict:
            errc = Errc::state_conflict;
            break;
        case AppCode::requirement:
            errc = Errc::requirement;
            break;
    }
    data["reason"] = app_code_reason(code);
    return Error(errc, std::move(message), std::move(data));
}

RpcError to_rpc_error(const Error& e) {
    // A server condition named by data.reason wins over the Errc.
    if (const auto* r = e.data.if_contains("reason"); r && r->is_string()) {
        static constexpr AppCode kNamed[] = {AppCode::actor_not_found, AppCode::overloaded,
                                             AppCode::cancelled, AppCode::unauthorized,
                                             AppCode::shutting_down};
        for (AppCode c : kNamed)
            if (r->get_string() == app_code_reason(c))
                return make_rpc(static_cast<int>(c), e.message, e.data, app_code_reason(c), e.code);
    }
    auto app = [&](AppCode c) {
        return make_rpc(static_cast<int>(c), e.message, e.data, app_code_reason(c), e.code);
    };
    switch (e.code) {
        case Errc::invalid_argument:
            return make_rpc(kInvalidParams, e.message, e.data, "invalid_params", e.code);
        case Errc::metadata:
            return app(AppCode::metadata_error);
        case Errc::script:
            return app(AppCode::script_error);
        case Errc::worker_crashed:
            return app(AppCode::worker_crashed);
        case Errc::timeout:
            return app(AppCode::timeout);
        case Errc::limit_exceeded:
            return app(AppCode::limit_exceeded);
        case Errc::sandbox_unavailable:
            return app(AppCode::sandbox_unavailable);
        case Errc::state_store:
            return app(AppCode::state_store);
        case Errc::state_conflict:
            return app(AppCode::state_conflict);
        case Errc::requirement:
            return app(AppCode::requirement);
        case Errc::io:
        case Errc::internal:
            break;
    }
    return make_rpc(kInternalError, e.message, e.data, "internal", e.code);
}

Error from_rpc_error(int code, std::string message, json::object data) {
    static constexpr Errc kAll[] = {
        Errc::invalid_argument,    Errc::metadata,    Errc::script,
        Errc::worker_crashed,      Errc::timeout,     Errc::limit_exceeded,
        Errc::sandbox_unavailable, Errc::io,          Errc::state_store,
        Errc::state_conflict,      Errc::requirement, Errc::internal};
    Errc errc = Errc::internal;
    bool named = false;
    if (const auto* n = data.if_contains("errc"); n && n->is_string()) {
        for (Errc c : kAll)
            if (n->get_string() == errc_name(c)) {
                errc = c;
                named = true;
            }
    }
    if (!named) {
        switch (code) {
            case kParseError:
            case kInvalidRequest:
            case kMethodNotFound:
            case kInvalidParams:
                errc = Errc::invalid_argument;
                break;
            case static_cast<int>(AppCode::script_error):
                errc = Errc::script;
                break;
            case static_cast<int>(AppCode::timeout):
                errc = Errc::timeout;
                break;
            case static_cast<int>(AppCode::limit_exceeded):
            case static_cast<int>(AppCode::overloaded):
                errc = Errc::limit_exceeded;
                break;
            case static_cast<int>(AppCode::sandbox_unavailable):
                errc = Errc::sandbox_unavailable;
                break;
            case static_cast<int>(AppCode::state_store):
                errc = Errc::state_store;
                break;
            case static_cast<int>(AppCode::state_conflict):
                errc = Errc::state_conflict;
                break;
            case static_cast<int>(AppCode::requirement):
                errc = Errc::requirement;
                break;
            default:
                errc = Errc::internal;
                break;
        }
    }
    data["rpc_code"] = code;
    return Error(errc, std::move(message), std::move(data));
}

Decoded decode(std::string_view text, std::size_t max_bytes) {
    Decoded out;
    auto v = parse_limited(text, max_bytes);
    if (!v) {
        const bool limit = v.error().code == Errc::limit_exceeded;
        RpcError e = limit ? to_rpc_error(v.error())
                           : make_rpc(kParseError, v.error().message, {}, "parse_error",
                                      Errc::invalid_argument);
        out.entries.emplace_back(make_error(nullptr, e));
        return out;
    }
    if (!v->is_array()) {
        out.entries.push_back(decode_one(*v));
        return out;
    }
    const auto& arr = v->get_array();
    if (arr.empty()) {
        out.entries.emplace_back(
            error_entry(nullptr, kInvalidRequest, "an empty batch is invalid", "invalid_request"));
        return out;
    }
    if (arr.size() > limits::kMaxRpcBatch) {
        const Error e(
            Errc::limit_exceeded,
            "batch of " + std::to_string(arr.size()) + " requests is over the limit of " +
                std::to_string(limits::kMaxRpcBatch),
            {{"limit", "kMaxRpcBatch"}, {"value", arr.size()}, {"max", limits::kMaxRpcBatch}});
        out.entries.emplace_back(make_error(nullptr, to_rpc_error(e)));
        return out;
    }
    out.batch = true;
    out.entries.reserve(arr.size());
    for (const auto& item : arr) out.entries.push_back(decode_one(item));
    return out;
}

json::object make_result(const json::value& id, json::value result) {
    return {{"jsonrpc", kVersion}, {"id", id}, {"result", std::move(result)}};
}

json::object make_error(const json::value& id, const RpcError& error) {
    return {{"jsonrpc", kVersion}, {"id", id}, {"error", error.to_json()}};
}

json::object make_notification(std::string_view method, json::object params) {
    return {{"jsonrpc", kVersion}, {"method", method}, {"params", std::move(params)}};
}

json::object make_request(const json::value& id, std::string_view method, json::value params) {
    json::object o{{"jsonrpc", kVersion}, {"id", id}, {"method", method}};
    if (!params.is_null()) o["params"] = std::move(params);
    return o;
}

std::string encode(const json::value& message) {
    return to_json_string(message);
}

Result<std::vector<Incoming>> decode_incoming(std::string_view text, std::size_t max_bytes) {
    auto v = parse_limited(text, max_bytes);
    if (!v) return tl::unexpected(v.error());
    std::vector<Incoming> out;
    auto one = [&](const json::value& m) -> Result<void> {
        if (!m.is_object())
            return fail(Errc::invalid_argument, "server sent a message that is not an object");
        const auto& o = m.get_object();
        if (const auto* method = o.if_contains("method"); method && !o.contains("id")) {
            if (!method->is_string())
                return fail(Errc::invalid_argument, "server sent a non-string method");
            Notification n{std::string(method->get_string()), nullptr};
            if (const auto* p = o.if_contains("params")) n.params = *p;
            out.emplace_back(std::move(n));
            return {};
        }
        const auto* id = o.if_contains("id");
        if (!id) return fail(Errc::invalid_argument, "server sent a response without an id");
        Response r;
        r.id = *id;
        if (const auto* res = o.if_contains("result")) {
            r.ok = true;
            r.result = *res;
        } else if (const auto* err = o.if_contains("error"); err && err->is_object()) {
            const auto& eo = err->get_object();
            const auto* code = eo.if_contains("code");
            const auto* msg = eo.if_contains("message");
            r.error.code =
                code && code->is_int64() ? static_cast<int>(code->get_int64()) : kInternalError;
            r.error.message = msg && msg->is_string() ? std::string(msg->get_string()) : "";
            if (const auto* d = eo.if_contains("data"); d && d->is_object())
                r.error.data = d->get_object();
        } else {
            return fail(Errc::invalid_argument,
                        "server sent a response with neither result nor error");
        }
        out.emplace_back(std::move(r));
        return {};
    };
    if (v->is_array()) {
        for (const auto& m : v->get_array())
            if (auto ok = one(m); !ok) return tl::unexpected(ok.error());
    } else if (auto ok = one(*v); !ok) {
        return tl::unexpected(ok.error());
    }
    return out;
}

}  // namespace sandflow::rpc
