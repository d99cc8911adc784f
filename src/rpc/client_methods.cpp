// The protocol's methods as typed calls of the client library (include/sandflow/client.hpp):
// list, load, process, unload, describe, ping, stats and cancel, each its params built and
// its result read over Client::call / Client::start_call (ws_client.cpp). No Beast/Asio here.
#include "sandflow/client.hpp"

namespace sandflow::client {

namespace {

json::object as_object(const json::value& v) {
    return v.is_object() ? v.get_object() : json::object{};
}

std::string str_or(const json::object& o, std::string_view k) {
    const auto* v = o.if_contains(k);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

}  // namespace

Result<std::vector<std::string>> Client::list() {
    auto r = call("list", json::object{});
    if (!r) return tl::unexpected(r.error());
    std::vector<std::string> names;
    const json::object o = as_object(*r);
    if (const auto* a = o.if_contains("actors"); a && a->is_array())
        for (const auto& n : a->get_array())
            if (n.is_string()) names.emplace_back(n.get_string());
    return names;
}

namespace {
LoadResult to_load_result(json::value v) {
    LoadResult l;
    l.raw = as_object(v);
    const auto* s = l.raw.if_contains("success");
    l.success = s && s->is_bool() && s->get_bool();
    l.actor_id = str_or(l.raw, "actor_id");
    l.instance_id = str_or(l.raw, "instance_id");
    l.error = str_or(l.raw, "error");
    return l;
}
}  // namespace

Result<LoadResult> Client::load_file(std::string_view file_path, std::string_view instance_id) {
    json::object p{{"file_path", file_path}};
    if (!instance_id.empty()) p["instance_id"] = instance_id;
    auto r = call("load", std::move(p));
    if (!r) return tl::unexpected(r.error());
    return to_load_result(std::move(*r));
}

Result<LoadResult> Client::load_source(std::string_view source, std::string_view language,
                                       std::string_view instance_id, std::string_view filename) {
    json::object p{{"source", source}, {"language", language}};
    if (!instance_id.empty()) p["instance_id"] = instance_id;
    if (!filename.empty()) p["filename"] = filename;
    auto r = call("load", std::move(p));
    if (!r) return tl::unexpected(r.error());
    return to_load_result(std::move(*r));
}

namespace {

json::object process_params(std::string_view actor_id, json::object payload,
                            const ProcessOptions& opts) {
    json::object p{{"actor_id", actor_id}, {"payload", std::move(payload)}};
    if (!opts.instance_id.empty()) p["instance_id"] = opts.instance_id;
    if (!opts.config.empty()) p["config"] = opts.config;
    if (opts.state) p["state"] = *opts.state;
    if (opts.timestamp) p["timestamp"] = opts.timestamp;
    if (opts.timeout.count() > 0) p["timeout_ms"] = opts.timeout.count();
    if (!opts.call_id.empty()) p["call_id"] = opts.call_id;
    return p;
}

NotificationCallback output_callback(OutputCallback on_output) {
    if (!on_output) return {};
    return [on_output = std::move(on_output)](std::string_view method, const json::value& params) {
        if (method != "script_output" || !params.is_object()) return;
        const auto& o = params.get_object();
        Output out;
        out.actor_id = str_or(o, "actor_id");
        out.instance_id = str_or(o, "instance_id");
        out.port = str_or(o, "port");
        if (const auto* d = o.if_contains("data")) out.data = *d;
        if (const auto* t = o.if_contains("timestamp"); t && t->is_int64())
            out.timestamp = t->get_int64();
        on_output(out);
    };
}

Result<ProcessResult> to_process_result(Result<json::value> r) {
    if (!r) return tl::unexpected(r.error());
    ProcessResult pr;
    if (!r->is_object()) return pr;
    json::object& o = r->get_object();
    if (auto* v = o.if_contains("outputs"); v && v->is_object())
        pr.outputs = std::move(v->get_object());
    if (auto* v = o.if_contains("state"); v && v->is_object())
        pr.state = std::move(v->get_object());
    if (const auto* v = o.if_contains("duration_us"); v && v->is_int64())
        pr.duration_us = v->get_int64();
    if (const auto* v = o.if_contains("replayed"); v && v->is_bool()) pr.replayed = v->get_bool();
    return pr;
}

}  // namespace

Result<ProcessResult> Client::process(std::string_view actor_id, json::object payload,
                                      OutputCallback on_output, const ProcessOptions& opts) {
    return to_process_result(call("process", process_params(actor_id, std::move(payload), opts),
                                  output_callback(std::move(on_output))));
}

void Client::start_process(std::string_view actor_id, json::object payload,
                           OutputCallback on_output, const ProcessOptions& opts,
                           DoneCallback<ProcessResult> on_done, std::int64_t* id_out) {
    start_call(
        "process", process_params(actor_id, std::move(payload), opts),
        output_callback(std::move(on_output)),
        [on_done = std::move(on_done)](Result<json::value> r) {
            on_done(to_process_result(std::move(r)));
        },
        id_out);
}

Result<json::object> Client::unload(std::string_view actor_id, std::string_view instance_id) {
    json::object p{{"actor_id", actor_id}};
    if (!instance_id.empty()) p["instance_id"] = instance_id;
    auto r = call("unload", std::move(p));
    if (!r) return tl::unexpected(r.error());
    return as_object(*r);
}

Result<json::object> Client::describe(std::string_view actor_id) {
    auto r = call("describe", json::object{{"actor_id", actor_id}});
    if (!r) return tl::unexpected(r.error());
    return as_object(*r);
}

Result<json::object> Client::ping() {
    auto r = call("ping", json::object{});
    if (!r) return tl::unexpected(r.error());
    return as_object(*r);
}

Result<json::object> Client::stats() {
    auto r = call("stats", json::object{});
    if (!r) return tl::unexpected(r.error());
    return as_object(*r);
}

Result<bool> Client::cancel(std::int64_t call_id) {
    auto r = call("cancel", json::object{{"id", call_id}});
    if (!r) return tl::unexpected(r.error());
    const json::object o = as_object(*r);
    const auto* c = o.if_contains("cancelled");
    return c && c->is_bool() && c->get_bool();
}

}  // namespace sandflow::client
