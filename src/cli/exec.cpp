// sandflow exec SCRIPT: load an actor into a sandboxed worker and call it.
//
// stdout carries results only, one JSON line each: every streamed output as it arrives,
// {"port": NAME, "data": VALUE}, then the call's end, {"result": {...}} or {"error": {...}}.
// Logs and the script's own prints go to stderr.
#include <cstdio>

#include "cli/common.hpp"
#include "core/duration.hpp"
#include "core/json.hpp"
#include "core/log.hpp"
#include "runtime/actor_limits.hpp"
#include "runtime/instance.hpp"

namespace sandflow::cli {

namespace {

struct ExecOptions {
    std::string script;
    std::vector<std::string> inputs;
    std::string config = "{}";
    std::string state = "{}";
    int repeat = 1;
    std::string timeout;  // empty: the actor's limits (30 s unless it declares one)
    std::vector<std::string> limits;
    BackendFlags backend;
    PackageFlags packages;
};

void print_line(const json::value& v) {
    const std::string s = to_json_string(v);
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

Result<json::object> parse_object(const std::string& text, std::string_view flag) {
    auto v = parse_json(text, flag);
    if (!v) return tl::unexpected(v.error());
    if (!v->is_object())
        return fail(Errc::invalid_argument,
                    std::string(flag) + " must be a JSON object, like '{\"key\": 1}'");
    return std::move(v->as_object());
}

Result<json::object> parse_inputs(const std::vector<std::string>& items) {
    json::object inputs;
    for (const auto& item : items) {
        const auto eq = item.find('=');
        if (eq == std::string::npos || eq == 0)
            return fail(Errc::invalid_argument, "--input '" + item +
                                                    "' must be PORT=JSON, like --input input=21 or "
                                                    "--input text='\"hello\"'");
        const std::string port = item.substr(0, eq);
        auto v = parse_json(std::string_view(item).substr(eq + 1), "--input " + port);
        if (!v) {
            Error e = v.error();
            e.message += " (a string value needs JSON quotes: --input " + port + "='\"text\"')";
            return tl::unexpected(std::move(e));
        }
        if (inputs.contains(port))
            return fail(Errc::invalid_argument, "--input " + port + " is given twice");
        inputs[port] = std::move(*v);
    }
    return inputs;
}

void print_log(const std::string& component, const runtime::LogLine& line) {
    const char* tag = line.source == runtime::LogLine::Source::stdout_   ? "stdout"
                      : line.source == runtime::LogLine::Source::stderr_ ? "stderr"
                                                                         : line.level.c_str();
    std::fprintf(stderr, "[%s %s] %s\n", component.c_str(), tag, line.text.c_str());
}

int run(const ExecOptions& o) {
    auto inputs = parse_inputs(o.inputs);
    if (!inputs) return report(inputs.error());
    auto config = parse_object(o.config, "--config");
    if (!config) return report(config.error());
    auto state = parse_object(o.state, "--state");
    if (!state) return report(state.error());
    std::chrono::microseconds timeout{0};
    if (!o.timeout.empty()) {
        auto t = parse_duration(o.timeout);
        if (!t) return report(t.error());
        timeout = *t;
    }

    auto spec = runtime::spec_from_file(o.script);
    if (!spec) return report(spec.error());
    auto catalog = open_packages(o.packages);
    if (!catalog) return report(catalog.error());
    if (auto ok = runtime::resolve_packages(*spec, **catalog, true); !ok) return report(ok.error());
    auto backend = open_backend(o.backend);
    if (!backend) return report(backend.error());
    const std::string component = spec->metadata.component;
    spec->initial_state = std::move(*state);
    // The actor's declared limits, then the command line's on top.
    runtime::LimitOverrides asked;
    for (const auto& a : o.limits)
        if (auto r = runtime::parse_limit_assignment(a, asked); !r) return report(r.error());
    auto declared = runtime::limits_for(spec->metadata, runtime::default_limits(**backend),
                                        runtime::default_maxima());
    if (!declared) return report(declared.error());
    auto limits = runtime::apply_limits(*declared, asked, runtime::default_maxima(), "--limit");
    if (!limits) return report(limits.error());
    spec->limits = *limits;
    spec->on_log = [component](const runtime::LogLine& l) { print_log(component, l); };

    auto instance = runtime::Instance::create(**backend, std::move(*spec));
    if (!instance) {
        print_line(json::object{{"error", instance.error().to_json()}});
        return report(instance.error());
    }

    runtime::CallRequest req;
    req.inputs = std::move(*inputs);
    req.config = std::move(*config);
    req.timeout = timeout;
    runtime::CallEvents events;
    events.on_output = [](std::string_view port, const json::value& data) {
        print_line(json::object{{"port", port}, {"data", data}});
    };
    events.on_log = [component](const runtime::LogLine& l) { print_log(component, l); };
    for (int i = 0; i < o.repeat; ++i) {
        auto r = (*instance)->call(req, events);
        if (!r) {
            print_line(json::object{{"error", r.error().to_json()}});
            if (r.error().code == Errc::script) {
                if (const auto* f = r.error().data.if_contains("formatted"); f && f->is_string())
                    std::fprintf(stderr, "%s\n", f->get_string().c_str());
            }
            return report(r.error());
        }
        print_line(json::object{{"result",
                                 {{"outputs", std::move(r->outputs)},
                                  {"state", std::move(r->state)},
                                  {"duration_us", r->duration.count()}}}});
    }
    return kExitOk;
}

}  // namespace

void register_exec(CLI::App& app, int& status) {
    auto o = std::make_shared<ExecOptions>();
    auto* cmd = app.add_subcommand(
        "exec",
        "Load an actor script into a sandboxed worker and call it.\n"
        "stdout: one JSON line per streamed output {\"port\",\"data\"} as it happens, then\n"
        "{\"result\": {\"outputs\",\"state\",\"duration_us\"}} or {\"error\": {...}} per call.\n"
        "Logs and the script's own prints go to stderr. With --repeat, calls stop at the\n"
        "first error. Exit status: 0 ok, 1 script raised, 2 usage/input/metadata error,\n"
        "3 sandbox, worker or limit error.");
    cmd->add_option("SCRIPT", o->script, "Actor script (.py or .js)")->required();
    cmd->add_option("-i,--input", o->inputs, "An input: PORT=JSON (repeatable), e.g. input=21");
    cmd->add_option("--config", o->config, "The actor's config, a JSON object")
        ->capture_default_str();
    cmd->add_option("--state", o->state, "Initial state, a JSON object")->capture_default_str();
    cmd->add_option("--repeat", o->repeat, "Make N calls on the same warm worker")
        ->capture_default_str()
        ->check(CLI::Range(1, 100'000'000));
    cmd->add_option("--timeout", o->timeout,
                    "Wall-clock limit per call (100ms, 5s, 2m); default: the actor's "
                    "timeout_ms limit, else " +
                        format_duration(limits::kDefaultCallTimeout));
    cmd->add_option("--limit", o->limits,
                    "NAME=VALUE (repeatable): memory_bytes, pids, cpu_milli, tmpfs_bytes, "
                    "output_bytes, frame_bytes, timeout_ms; sizes may end in K, M, G");
    add_backend_flags(*cmd, o->backend);
    add_package_flags(*cmd, o->packages);
    cmd->callback([o, &status] { status = run(*o); });
}

}  // namespace sandflow::cli
