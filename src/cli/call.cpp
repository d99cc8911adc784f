// sandflow call METHOD [PARAMS]: one JSON-RPC call to a runtime server, through the C++
// client library. stdout: every notification for the call as a JSON line
// {"method": M, "params": P} as it arrives, then {"result": R} or {"error": E}.
#include <cstdio>
#include <cstdlib>

#include "cli/common.hpp"
#include "core/duration.hpp"
#include "core/json.hpp"
#include "sandflow/client.hpp"

namespace sandflow::cli {

namespace {

// How long `call` waits for an answer by default: longer than the server's default call
// timeout, so that a slow call's own timeout error is what the user sees.
constexpr std::chrono::seconds kDefaultCallWait{60};

struct CallOptions {
    std::string method;
    std::string params = "{}";
    std::string url = "ws://127.0.0.1:" + std::to_string(limits::kDefaultPort);
    std::string token;
    std::string timeout = format_duration(kDefaultCallWait);
};

void print_line(const json::value& v) {
    const std::string s = to_json_string(v);
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

int run(CallOptions o) {
    // `cancel` names a call in flight on the same connection; each `sandflow call` opens
    // its own, where no other call can be in flight.
    if (o.method == "cancel")
        return report(Error(Errc::invalid_argument,
                            "`sandflow call cancel` cannot work: cancel stops a call sent on the "
                            "same connection, and each `sandflow call` opens a new one. Give the "
                            "call itself a --timeout: past it, it is cancelled on the server"));
    auto params = parse_json(o.params, "PARAMS");
    if (!params) return report(params.error());
    if (!params->is_object() && !params->is_array())
        return report(Error(Errc::invalid_argument,
                            "PARAMS must be a JSON object (or array), like '{\"actor_id\": "
                            "\"double\", \"payload\": {\"input\": 21}}'"));
    auto timeout = parse_duration(o.timeout);
    if (!timeout) return report(timeout.error());
    if (o.token.empty()) {
        if (const char* t = std::getenv("SANDFLOW_TOKEN")) o.token = t;
    }
    client::Options co;
    co.token = o.token;
    co.call_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*timeout);
    co.reconnect = false;
    auto c = client::Client::connect(o.url, co);
    if (!c) return report(c.error());
    auto r =
        (*c)->call(o.method, std::move(*params), [](std::string_view method, const json::value& p) {
            print_line(json::object{{"method", method}, {"params", p}});
        });
    if (!r) {
        json::object e{{"message", r.error().message}, {"data", r.error().data}};
        if (const auto* code = r.error().data.if_contains("rpc_code")) e["code"] = *code;
        print_line(json::object{{"error", std::move(e)}});
        return report(r.error());
    }
    print_line(json::object{{"result", std::move(*r)}});
    return kExitOk;
}

}  // namespace

void register_call(CLI::App& app, int& status) {
    auto o = std::make_shared<CallOptions>();
    auto* cmd = app.add_subcommand(
        "call",
        "Call a method of a runtime server (sandflow serve) and print what comes back.\n"
        "stdout: each notification of the call as a JSON line {\"method\",\"params\"} as it\n"
        "arrives (script_output for process), then {\"result\": ...} or {\"error\": {\"code\",\n"
        "\"message\",\"data\"}}. Methods: list, load, process, unload, describe, ping, stats,\n"
        "cancel (docs/protocol.md).\n"
        "Example: sandflow call process '{\"actor_id\":\"double\",\"payload\":{\"input\":21}}'\n" +
            std::string(kExitStatusHelp));
    cmd->add_option("METHOD", o->method, "Method name")->required();
    cmd->add_option("PARAMS", o->params, "Params, a JSON object")->capture_default_str();
    cmd->add_option("--url", o->url, "Server URL")->capture_default_str();
    cmd->add_option("--token", o->token, "Bearer token; default: $SANDFLOW_TOKEN");
    cmd->add_option(
           "--timeout", o->timeout,
           "How long to wait for the response; past it the call is cancelled on the server")
        ->capture_default_str();
    cmd->callback([o, &status] { status = run(*o); });
}

}  // namespace sandflow::cli
