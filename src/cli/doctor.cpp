// sandflow doctor: one line per backend (works, or why not and the fix), which one `auto`
// picks at each isolation level, then each mechanism under each tier, checked one by one on
// this host: works / does not / why / how to fix. Exits 0 when `auto` finds a backend at the
// default level, kExitSandbox (3) when it cannot.
//
// The checks are the sandbox layer's host probes (sandbox/host_probe.hpp); this prints them.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/common.hpp"
#include "sandbox/host_probe.hpp"

namespace sandflow::cli {

namespace {

using State = sandbox::HostCheck::State;

void print_checks(const char* title, const std::vector<sandbox::HostCheck>& checks) {
    std::size_t w = 0;
    for (const auto& c : checks) w = std::max(w, c.mechanism.size());
    std::printf("\n%s\n", title);
    for (const auto& c : checks) {
        const char* st = c.state == State::works ? "works" : c.state == State::fails ? "NO" : "-";
        std::printf("  %-*s  %-5s  %s\n", static_cast<int>(w), c.mechanism.c_str(), st,
                    c.detail.c_str());
        if (c.state == State::fails && !c.fix.empty())
            std::printf("  %-*s  %-5s  fix: %s\n", static_cast<int>(w), "", "", c.fix.c_str());
    }
}

int run_doctor() {
    // The backends, one line each, then what `auto` picks at each level, then the
    // mechanisms under each tier.
    std::printf("%-10s %-8s %-14s %s\n", "backend", "level", "status", "detail / fix");
    for (const auto& b : sandbox::probe_backends())
        std::printf("%-10s %-8s %-14s %s\n", b.name.c_str(),
                    std::string(sandbox::level_name(b.level)).c_str(),
                    b.runs ? "works" : "CANNOT RUN",
                    b.runs ? (b.note.empty() ? std::string("starts a sandbox here")
                                             : "starts a sandbox here, " + b.note)
                                 .c_str()
                           : b.why.c_str());
    std::printf("%-10s %-8s %-14s %s\n", "none", "none", "opt-in only",
                "no isolation; only with --insecure-no-sandbox");

    std::printf("\n");
    bool default_runs = false;
    for (auto level : {sandbox::IsolationLevel::process, sandbox::IsolationLevel::os,
                       sandbox::IsolationLevel::kernel, sandbox::IsolationLevel::vm}) {
        const std::string name(sandbox::level_name(level));
        auto pick = sandbox::select_backend(level);
        if (pick)
            std::printf("auto (level %s) -> %s%s\n", name.c_str(), pick->backend.c_str(),
                        level == sandbox::IsolationLevel::process ? "  (the default level)" : "");
        else
            std::printf("auto (level %s) -> none meets it: %s\n", name.c_str(),
                        pick.error().message.c_str());
        if (level == sandbox::IsolationLevel::process) default_runs = pick.has_value();
    }

    print_checks("namespace tier (level os): its own mechanisms", sandbox::namespace_tier_checks());
    print_checks("both tiers (namespace and landlock), then the landlock tier's own",
                 sandbox::process_tier_checks());
    sandbox::BackendOptions opts;
    auto backend = sandbox::make_backend("auto", opts);
    sandbox::Backend* b = backend ? backend->get() : nullptr;
    print_checks(
        b ? ("interpreters, in the backend auto picks (" + std::string(b->name()) + ")").c_str()
          : "interpreters (no backend can run here)",
        sandbox::interpreter_checks(b));

    if (default_runs) return kExitOk;
    std::printf(
        "\nno isolating backend can run here; fix a line marked NO above, or run trusted "
        "scripts without isolation with `--insecure-no-sandbox`\n");
    return kExitSandbox;
}

}  // namespace

void register_doctor(CLI::App& app, int& status) {
    auto* cmd = app.add_subcommand(
        "doctor",
        "Check each sandbox backend and mechanism on this host and print what works, what does\n"
        "not, why, how to fix it, and which backend `auto` picks at each isolation level.\n"
        "Exit status 0 when a backend can run at the default level (process), 3 when not.");
    cmd->callback([&status] { status = run_doctor(); });
}

}  // namespace sandflow::cli
