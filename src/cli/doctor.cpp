// sandflow doctor: one line per backend (works, or why not and the fix), which one `auto`
// picks at each isolation level, then each mechanism under each tier, checked one by one on
// this host: works / does not / why / how to fix. Exits 0 when `auto` finds a backend at the
// default level, kExitSandbox (3) when it cannot.
//
// Every check that touches the kernel runs in a forked child, so that a failing or
// half-applied mechanism never affects the doctor itself.
#include <fcntl.h>
#include <linux/landlock.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>

#include "cli/common.hpp"
#include "sandbox/landlock/landlock_backend.hpp"
#include "sandbox/mechanisms/capabilities.hpp"
#include "sandbox/mechanisms/seccomp_policy.hpp"
#include "sandbox/namespace/namespace_backend.hpp"

namespace sandflow::cli {

namespace {

enum class State { works, fails, info };

struct Check {
    explicit Check(std::string m) : mechanism(std::move(m)) {}
    std::string mechanism;
    State state = State::works;
    std::string detail;  // what was found, or why it does not work
    std::string fix;     // how to fix it (only when it does not work)
    bool required = true;
};

// Runs `body` in a child; the child's exit status 0 means success, otherwise it is an
// errno value.
int in_child(const std::function<int()>& body) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) return errno;
    if (pid == 0) ::_exit(body());
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    return EINTR;
}

std::string read_line(const char* path) {
    std::ifstream in(path);
    std::string s;
    std::getline(in, s);
    return s;
}

Check namespace_check(const char* name, const char* what, int flag) {
    Check c{name};
    const int flags = CLONE_NEWUSER | flag;
    const int e = in_child([flags] { return ::unshare(flags) == 0 ? 0 : errno; });
    if (e == 0) {
        c.detail =
            "unshare(CLONE_NEWUSER" + (flag ? std::string(" | CLONE_NEW") + what : "") + ") works";
        return c;
    }
    c.state = State::fails;
    c.detail = std::string("unshare failed: ") + std::strerror(e);
    if (flag == 0 || e == EPERM || e == ENOSPC || e == EUSERS)
        c.fix =
            "allow unprivileged user namespaces: sysctl user.max_user_namespaces=10000 "
            "(and kernel.unprivileged_userns_clone=1 / kernel.apparmor_restrict_"
            "unprivileged_userns=0 where they exist); in a container, run it with a "
            "seccomp profile that allows unshare/clone with namespace flags";
    else
        c.fix = std::string("a kernel built with CONFIG_") + what + "_NS";
    return c;
}

Check seccomp_check() {
    Check c{"seccomp-bpf (libseccomp policy)"};
    auto prog = sandbox::mech::build_seccomp_program();
    if (!prog) {
        c.state = State::fails;
        c.detail = prog.error().message;
        c.fix = "install libseccomp2 >= 2.5 (Debian: libseccomp-dev to build)";
        return c;
    }
    const int e = in_child([&] {
        if (auto f = sandbox::mech::set_no_new_privs()) return f.err;
        if (auto f = sandbox::mech::install_seccomp(*prog)) return f.err;
        return ::syscall(SYS_keyctl, 0, -3, 0) == -1 && errno == EPERM ? 0 : 200;
    });
    if (e == 0) {
        c.detail = std::to_string(sandbox::mech::seccomp_rules().size()) + " rules, " +
                   std::to_string(prog->main.size()) + " BPF instructions; installs and denies";
    } else {
        c.state = State::fails;
        c.detail = e == 200 ? "installed, but a denied call got through"
                            : std::string("installing failed: ") + std::strerror(e);
        c.fix = "a kernel with CONFIG_SECCOMP_FILTER";
    }
    return c;
}

Check capabilities_check() {
    Check c{"capabilities dropped (bounding set too)"};
    const int last = sandbox::mech::last_capability();
    const int e = in_child([last] {
        if (::unshare(CLONE_NEWUSER) != 0) return errno;
        if (auto f = sandbox::mech::drop_all_capabilities(last)) return f.err;
        return 0;
    });
    if (e == 0) {
        c.detail = "securebits locked, bounding set emptied (caps 0.." + std::to_string(last) + ")";
    } else {
        c.state = State::fails;
        c.detail = std::string("failed: ") + std::strerror(e);
        c.fix = "needs a user namespace (see above)";
    }
    return c;
}

Check landlock_check() {
    Check c{"Landlock"};
    c.required = false;
    const long abi =
        ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
    c.state = State::info;
    if (abi > 0)
        c.detail = "ABI " + std::to_string(abi) + ": applied to every worker of both tiers" +
                   (abi >= 4 ? " (filesystem and TCP rules" : " (filesystem rules") +
                   (abi >= 6 ? ", signal and abstract-socket scoping)" : ")");
    else
        c.detail = std::string("not available: ") + std::strerror(errno) +
                   "; the namespace tier runs without this layer, the landlock tier cannot run";
    return c;
}

std::vector<Check> cgroup_checks(const sandbox::mech::CgroupSupport& s) {
    std::vector<Check> out;
    for (const auto& ctl : s.controllers) {
        Check c{"cgroup " + ctl.name + " limit"};
        c.required = false;
        if (ctl.usable()) {
            c.detail = "v1, per sandbox under " + ctl.base;
        } else {
            c.state = State::fails;
            c.detail = ctl.why + "; rlimits only";
            c.fix =
                "run the runtime as root, or delegate a writable cgroup to its user (inside a "
                "container /sys/fs/cgroup is read-only unless the container is given one)";
        }
        out.push_back(std::move(c));
    }
    Check v2{"cgroup v2"};
    v2.required = false;
    v2.state = State::info;
    v2.detail = s.v2_mounted ? "mounted; not used by this version (v1 is)" : "not mounted";
    out.push_back(std::move(v2));
    return out;
}

Check interpreter_check(sandbox::Backend* backend, const char* path,
                        std::vector<std::string> argv) {
    Check c{std::string(path) + " in the sandbox"};
    c.required = false;
    if (::access(path, X_OK) != 0) {
        c.state = State::fails;
        c.detail = std::string("not installed: ") + std::strerror(errno);
        c.fix =
            std::string("apt-get install ") + (std::strstr(path, "node") ? "nodejs" : "python3");
        return c;
    }
    if (!backend) {
        c.state = State::fails;
        c.detail = "no sandbox to run it in";
        return c;
    }
    sandbox::WorkerSpec spec;
    spec.argv = std::move(argv);
    const auto start = std::chrono::steady_clock::now();
    auto proc = backend->spawn(spec);
    if (!proc) {
        c.state = State::fails;
        c.detail = proc.error().message;
        return c;
    }
    std::optional<sandbox::ExitStatus> ended;
    while (!(ended = (*proc)->try_wait()) &&
           std::chrono::steady_clock::now() - start < std::chrono::seconds(10))
        ::usleep(200);
    const sandbox::ExitStatus st = ended ? *ended : (*proc)->kill_and_wait();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (!WIFEXITED(st.raw) || WEXITSTATUS(st.raw) != 0) {
        c.state = State::fails;
        c.detail = st.describe();
        return c;
    }
    char buf[64];
    std::snprintf(buf, sizeof buf, "starts and exits 0 (%.1f ms, sandbox included)", ms);
    c.detail = buf;
    return c;
}

Check landlock_tier_checks(std::vector<Check>& out) {
    auto backend = sandbox::LandlockBackend::create();
    Check ids{"sandbox uids (landlock tier)"};
    ids.required = false;
    ids.state = State::info;
    if (backend) {
        const auto& i = (*backend)->ids();
        ids.detail = i.per_sandbox()
                         ? "one uid per sandbox from " + std::to_string(i.range().first) + "-" +
                               std::to_string(i.range().first + i.range().count - 1)
                         : "the runtime's own uid " + std::to_string(::geteuid()) + ": " + i.why();
    } else {
        ids.detail = backend.error().message;
    }
    out.push_back(std::move(ids));
    Check seccomp{"seccomp, landlock tier (no sockets, signal guard)"};
    auto prog = sandbox::mech::build_seccomp_program(sandbox::mech::SeccompTier::no_namespaces);
    const int e = prog ? in_child([&] {
        if (auto f = sandbox::mech::set_no_new_privs()) return f.err;
        if (auto f = sandbox::mech::install_seccomp(*prog, ::getppid(), 0)) return f.err;
        return ::socket(AF_INET, SOCK_STREAM, 0) == -1 && errno == EPERM ? 0 : 200;
    })
                       : EINVAL;
    if (e == 0) {
        seccomp.detail =
            std::to_string(
                sandbox::mech::seccomp_rules(sandbox::mech::SeccompTier::no_namespaces).size()) +
            " rules; installs and refuses socket()";
    } else {
        seccomp.state = State::fails;
        seccomp.detail = !prog      ? prog.error().message
                         : e == 200 ? "installed, but socket() got through"
                                    : std::string("installing failed: ") + std::strerror(e);
        seccomp.fix = "a kernel with CONFIG_SECCOMP_FILTER";
    }
    out.push_back(std::move(seccomp));
    Check end{"landlock sandbox (end to end)"};
    if (auto probe = sandbox::LandlockBackend::probe(); probe) {
        end.detail = "Landlock, seccomp, rlimits, supervisor and exec of /usr/bin/true work";
    } else {
        end.state = State::fails;
        end.detail = probe.error().message;
        end.fix = "fix the first failing line above";
    }
    return end;
}

void print_checks(const char* title, const std::vector<Check>& checks) {
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

    std::vector<Check> checks;
    {
        const std::string max = read_line("/proc/sys/user/max_user_namespaces");
        auto c = namespace_check("user namespace", "USER", 0);
        if (!max.empty()) c.detail += " (user.max_user_namespaces = " + max + ")";
        if (::geteuid() == 0)
            c.detail += "; sandbox root = host nobody (65534)";
        else
            c.detail += "; sandbox root = your own uid " + std::to_string(::geteuid());
        checks.push_back(std::move(c));
    }
    checks.push_back(namespace_check("pid namespace", "PID", CLONE_NEWPID));
    checks.push_back(namespace_check("mount namespace", "NS", CLONE_NEWNS));
    checks.push_back(namespace_check("network namespace", "NET", CLONE_NEWNET));
    checks.push_back(namespace_check("ipc namespace", "IPC", CLONE_NEWIPC));
    checks.push_back(namespace_check("uts namespace", "UTS", CLONE_NEWUTS));
    checks.push_back(namespace_check("cgroup namespace", "CGROUP", CLONE_NEWCGROUP));
    checks.push_back(capabilities_check());
    Check ns_whole{"namespace sandbox (end to end)"};
    auto ns_probe = sandbox::NamespaceBackend::probe();
    if (ns_probe) {
        ns_whole.detail = "pivot_root, /proc, binds and exec of /usr/bin/true work";
    } else {
        ns_whole.state = State::fails;
        ns_whole.detail = ns_probe.error().message;
        ns_whole.fix = "fix the first failing line above";
    }
    checks.push_back(std::move(ns_whole));
    print_checks("namespace tier (level os): its own mechanisms", checks);

    checks.clear();
    {
        Check c{"no_new_privs"};
        const int e = in_child([] { return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ? errno : 0; });
        if (e != 0) {
            c.state = State::fails;
            c.detail = std::strerror(e);
            c.fix = "Linux >= 3.5";
        } else {
            c.detail = "prctl(PR_SET_NO_NEW_PRIVS) works";
        }
        checks.push_back(std::move(c));
    }
    checks.push_back(seccomp_check());
    checks.push_back(landlock_check());
    for (auto& c : cgroup_checks(sandbox::mech::detect_cgroup_support()))
        checks.push_back(std::move(c));
    auto ll_end = landlock_tier_checks(checks);
    checks.push_back(std::move(ll_end));
    print_checks("both tiers (namespace and landlock), then the landlock tier's own", checks);

    checks.clear();
    sandbox::BackendOptions opts;
    auto backend = sandbox::make_backend("auto", opts);
    sandbox::Backend* b = backend ? backend->get() : nullptr;
    checks.push_back(
        interpreter_check(b, "/usr/bin/python3", {"/usr/bin/python3", "-I", "-S", "-c", "pass"}));
    checks.push_back(interpreter_check(b, "/usr/bin/node", {"/usr/bin/node", "-e", "0"}));
    print_checks(
        b ? ("interpreters, in the backend auto picks (" + std::string(b->name()) + ")").c_str()
          : "interpreters (no backend can run here)",
        checks);

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
