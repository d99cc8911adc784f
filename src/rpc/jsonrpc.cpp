#include "rpc/jsonrpc.hpp"
#include "rpc/rpc_limits.hpp"

#include <optional>

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

WireCode wire_code(Errc code) {
    auto app = [](AppCode c, std::string_view reason) {
        return WireCode{static_cast<int>(c), reason};
    };
    switch (code) {
        case Errc::invalid_argument:
            return {kInvalidParams, "invalid_params"};
        case Errc::metadata:
            return app(AppCode::metadata_error, "metadata_error");
        case Errc::requirement:
            return app(AppCode::requirement, "requirement");
        case Errc::script:
            return app(AppCode::script_error, "script_error");
        case Errc::worker_crashed:
            return app(AppCode::worker_crashed, "worker_crashed");
        case Errc::timeout:
            return app(AppCode::timeout, "timeout");
        case Errc::limit_exceeded:
            return app(AppCode::limit_exceeded, "limit_exceeded");
        case Errc::sandbox_unavailable:
            return app(AppCode::sandbox_unavailable, "sandbox_unavailable");
        case Errc::state_store:
            return app(AppCode::state_store, "state_store");
        case Errc::state_conflict:
            return app(AppCode::state_conflict, "state_conflict");
        case Errc::not_found:
            return app(AppCode::actor_not_found, "actor_not_found");
        case Errc::method_not_found:
            return {kMethodNotFound, "method_not_found"};
        case Errc::overloaded:
            return app(AppCode::overloaded, "overloaded");
        case Errc::cancelled:
            return app(AppCode::cancelled, "cancelled");
        case Errc::unauthorized:
            return app(AppCode::unauthorized, "unauthorized");
        case Errc::shutting_down:
            return app(AppCode::shutting_down, "shutting_down");
        case Errc::io:
        case Errc::internal:
            break;
    }
    return {kInternalError, "internal"};
}

RpcError to_rpc_error(const Error& e) {
    const WireCode w = wire_code(e.code);
    return make_rpc(w.code, e.message, e.data, w.reason, e.code);
}

Error from_rpc_error(int code, std::string message, json::object data) {
    std::optional<Errc> errc;
    int holders = 0;
    for (Errc c : kAllErrcs)
        if (wire_code(c).code == code) {
            errc = c;
            ++holders;
        }
    if (holders != 1) {
        const auto* n = data.if_contains("errc");
        auto named = n && n->is_string() ? errc_from_name(n->get_string()) : std::nullopt;
        if (named && wire_code(*named).code == code)
            errc = named;
        else if (code == kParseError || code == kInvalidRequest)
            errc = Errc::invalid_argument;
        else
            errc = Errc::internal;
    }
    data["rpc_code"] = code;
    return Error(*errc, std::move(message), std::move(data));
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
