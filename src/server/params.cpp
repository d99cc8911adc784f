#include "server/params.hpp"

#include <string>

#include "actor/script_limits.hpp"
#include "rpc/jsonrpc.hpp"
#include "server/server_limits.hpp"

namespace sandflow::server {

Result<Params> Params::of(const json::value& params) {
    static const json::object kEmpty;
    if (params.is_null()) return Params{&kEmpty};
    if (!params.is_object())
        return fail(Errc::invalid_argument,
                    "params must be an object, like {\"actor_id\": "
                    "\"double\"}");
    return Params{&params.get_object()};
}

Result<std::string> Params::str(std::string_view k, bool required, std::size_t max,
                                std::string dflt) const {
    const auto* v = find(k);
    if (!v || v->is_null()) {
        if (required)
            return fail(Errc::invalid_argument, "params." + std::string(k) + " is required",
                        {{"param", k}});
        return dflt;
    }
    if (!v->is_string())
        return fail(Errc::invalid_argument, "params." + std::string(k) + " must be a string",
                    {{"param", k}});
    if (v->get_string().size() > max)
        return fail(
            Errc::invalid_argument,
            "params." + std::string(k) + " is longer than " + std::to_string(max) + " bytes",
            {{"param", k}, {"max", max}});
    return std::string(v->get_string());
}

Result<json::object> Params::obj(std::string_view k) const {
    const auto* v = find(k);
    if (!v || v->is_null()) return json::object{};
    if (!v->is_object())
        return fail(Errc::invalid_argument, "params." + std::string(k) + " must be an object",
                    {{"param", k}});
    return v->get_object();
}

Error not_found(std::string_view component, std::string_view instance_id) {
    json::object d{{"actor_id", component}};
    if (!instance_id.empty()) d["instance_id"] = instance_id;
    return Error(Errc::not_found,
                 instance_id.empty()
                     ? "actor '" + std::string(component) +
                           "' is not loaded; load it first with {\"file_path\"} or {\"source\", "
                           "\"language\"}"
                     : "instance '" + std::string(instance_id) + "' of actor '" +
                           std::string(component) + "' is not loaded",
                 std::move(d));
}

namespace {

Result<runtime::LimitOverrides> limits_of(const Params& p) {
    return runtime::parse_limits(p.find("limits") ? *p.find("limits") : json::value(nullptr),
                                 "params.limits");
}

}  // namespace

Result<LoadParams> parse_load(const Params& p) {
    // Parameter shapes only: everything about the script itself is the load's result.
    auto file_path = p.str("file_path", false, limits::kMaxFilePathBytes);
    auto source = p.str("source", false, limits::kMaxScriptBytes);
    auto language = p.str("language", false, limits::kMaxLanguageBytes);
    auto filename = p.str("filename", false, limits::kMaxFilenameBytes);
    auto instance_id =
        p.str("instance_id", false, limits::kMaxInstanceIdBytes, std::string(kDefaultInstance));
    auto state = p.obj("state");
    auto limits_asked = limits_of(p);
    for (const Error* e :
         {limits_asked ? nullptr : &limits_asked.error(), file_path ? nullptr : &file_path.error(),
          source ? nullptr : &source.error(), language ? nullptr : &language.error(),
          filename ? nullptr : &filename.error(), instance_id ? nullptr : &instance_id.error(),
          state ? nullptr : &state.error()})
        if (e) return tl::unexpected(*e);
    if (file_path->empty() == source->empty())
        return fail(Errc::invalid_argument,
                    "load needs exactly one of params.file_path or params.source");
    LoadParams out;
    out.file_path = std::move(*file_path);
    out.source = std::move(*source);
    out.language = std::move(*language);
    out.filename = std::move(*filename);
    out.instance_id = std::move(*instance_id);
    out.state = std::move(*state);
    out.has_state = p.find("state") != nullptr;
    out.limits = std::move(*limits_asked);
    return out;
}

Result<ProcessParams> parse_process(const Params& p) {
    ProcessParams out;
    auto component = parse_actor_id(p);
    if (!component) return tl::unexpected(component.error());
    out.actor_id = std::move(*component);
    auto instance_id =
        p.str("instance_id", false, limits::kMaxInstanceIdBytes, std::string(kDefaultInstance));
    if (!instance_id) return tl::unexpected(instance_id.error());
    out.instance_id = std::move(*instance_id);
    auto payload = p.obj("payload");
    if (!payload) return tl::unexpected(payload.error());
    auto config = p.obj("config");
    if (!config) return tl::unexpected(config.error());
    auto state = p.obj("state");
    if (!state) return tl::unexpected(state.error());
    auto limits_asked = limits_of(p);
    if (!limits_asked) return tl::unexpected(limits_asked.error());
    out.limits = std::move(*limits_asked);
    auto call_id = p.str("call_id", false, limits::kMaxCallIdBytes);
    if (!call_id) return tl::unexpected(call_id.error());
    out.call_id = std::move(*call_id);
    runtime::CallRequest& req = out.req;
    req.inputs = std::move(*payload);
    req.config = std::move(*config);
    // Reflow sends "state": {} on every call: only a non-empty object replaces the
    // committed state for this call.
    if (!state->empty()) req.state = std::move(*state);
    if (const auto* ts = p.find("timestamp"); ts && !ts->is_null()) {
        if (ts->is_int64()) {
            req.timestamp = ts->get_int64();
        } else if (ts->is_double()) {
            req.timestamp = static_cast<std::int64_t>(ts->get_double());
        } else {
            return fail(Errc::invalid_argument,
                        "params.timestamp must be a number (ms since the epoch)",
                        {{"param", "timestamp"}});
        }
    }
    if (const auto* t = p.find("timeout_ms"); t && !t->is_null()) {
        if (!t->is_int64() || t->get_int64() <= 0 || t->get_int64() > limits::kMaxTimeoutMs)
            return fail(Errc::invalid_argument,
                        "params.timeout_ms must be an integer in 1.." +
                            std::to_string(limits::kMaxTimeoutMs),
                        {{"param", "timeout_ms"}});
        req.timeout = std::chrono::milliseconds(t->get_int64());
    }
    return out;
}

Result<UnloadParams> parse_unload(const Params& p) {
    auto component = parse_actor_id(p);
    if (!component) return tl::unexpected(component.error());
    auto instance_id = p.str("instance_id", false, limits::kMaxInstanceIdBytes);
    if (!instance_id) return tl::unexpected(instance_id.error());
    return UnloadParams{std::move(*component), std::move(*instance_id)};
}

Result<std::string> parse_actor_id(const Params& p) {
    return p.str("actor_id", true, limits::kMaxActorIdBytes);
}

Result<json::value> parse_cancel_id(const Params& p) {
    const auto* id = p.find("id");
    if (!id || !(id->is_string() || id->is_int64() || id->is_uint64()))
        return fail(Errc::invalid_argument,
                    "params.id must be the id (string or integer) of a call in flight "
                    "on this connection",
                    {{"param", "id"}});
    return *id;
}

}  // namespace sandflow::server
