// Host probes: what this host lets the sandbox backends do, found by trying it. `auto`
// selection (backend.cpp), `sandflow doctor`, `sandflow serve`'s health check and the tests
// ask here, so that each question is answered one way.
//
// The backends' own probes (probe_backend) start one sandbox each, once per process, and
// only when asked. The mechanism checks (HostCheck) try each kernel feature in a forked
// child, so that a failing or half-applied mechanism never affects the caller; they are
// for a single-threaded caller (the child runs ordinary code after fork).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "sandbox/backend.hpp"

namespace sandflow::sandbox {

// The isolating backends in the order `auto` prefers them (select_backend).
struct IsolatingBackend {
    std::string_view name;
    IsolationLevel level;
};
std::vector<IsolatingBackend> isolating_backends();

// Whether one isolating backend can start a sandbox on this host: found by starting one
// (/usr/bin/true), once per process.
struct BackendStatus {
    std::string name;
    IsolationLevel level = IsolationLevel::none;
    bool runs = false;
    std::string why;  // when it cannot run: what failed, with how to fix it
    // When it runs: how, where that matters ("under TCG emulation, slow (...)").
    std::string note;
    // It runs, but emulated (a microVM without usable KVM): `auto` takes it only when the
    // level asks for it exactly.
    bool emulated = false;
};
// Every isolating backend, in the order `auto` prefers them.
std::vector<BackendStatus> probe_backends();
// One of them by name; nullopt for a name that is not an isolating backend.
std::optional<BackendStatus> probe_backend(std::string_view name);

// Whether `backend`, as configured, starts a sandbox now: /bin/true is started and
// killed; the error says why not.
Result<void> probe_start(Backend& backend);

// One kernel mechanism or host feature a tier relies on, as checked here.
struct HostCheck {
    enum class State { works, fails, info };
    explicit HostCheck(std::string m) : mechanism(std::move(m)) {}
    std::string mechanism;
    State state = State::works;
    std::string detail;  // what was found, or why it does not work
    std::string fix;     // how to fix it (only when it does not work)
};
// The namespace tier's own: each namespace, dropping capabilities, the tier end to end.
std::vector<HostCheck> namespace_tier_checks();
// What both isolating tiers use (no_new_privs, seccomp, Landlock, cgroups), then the
// landlock tier's own (sandbox uids, its seccomp policy, the tier end to end).
std::vector<HostCheck> process_tier_checks();
// python3 and node started in `backend` (null: no backend runs here).
std::vector<HostCheck> interpreter_checks(Backend* backend);

}  // namespace sandflow::sandbox
