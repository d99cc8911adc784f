#include "sandbox/host_probe.hpp"

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

#include "sandbox/gvisor/gvisor_backend.hpp"
#include "sandbox/landlock/landlock_backend.hpp"
#include "sandbox/mechanisms/capabilities.hpp"
#include "sandbox/mechanisms/cgroups.hpp"
#include "sandbox/mechanisms/seccomp_policy.hpp"
#include "sandbox/microvm/microvm_backend.hpp"
#include "sandbox/namespace/namespace_backend.hpp"

namespace sandflow::sandbox {

namespace {

// The last line of a tier's checks: its backend's probe, which starts a sandbox running
// /usr/bin/true; `works` says what that showed.
HostCheck end_to_end_check(const std::string& tier, const Result<void>& probe, std::string works) {
    HostCheck c{tier + " sandbox (end to end)"};
    if (probe) {
        c.detail = std::move(works);
    } else {
        c.state = HostCheck::State::fails;
        c.detail = probe.error().message;
        c.fix = "fix the first failing line above";
    }
    return c;
}

// The isolating backends in the order `auto` prefers them, and how each is probed; each
// probe is computed once per process by its backend, so a backend is started only when
// someone asks about it.
struct Isolating {
    std::string_view name;
    IsolationLevel level;
    Result<void> (*probe)();
    // How it runs, once probe() said it does; nullptr: nothing to add.
    std::string (*note)() = nullptr;
    bool (*emulated)() = nullptr;
};
constexpr Isolating kIsolating[] = {
    {"namespace", IsolationLevel::os, &NamespaceBackend::probe},
    {"landlock", IsolationLevel::process, &LandlockBackend::probe},
    {"gvisor", IsolationLevel::kernel, &GvisorBackend::probe},
    {"microvm", IsolationLevel::vm, &MicrovmBackend::probe, &MicrovmBackend::probe_note,
     &MicrovmBackend::emulated},
};

BackendStatus status_of(const Isolating& b) {
    auto r = b.probe();
    BackendStatus s;
    s.name = std::string(b.name);
    s.level = b.level;
    s.runs = r.has_value();
    if (!r) s.why = r.error().message;
    if (r && b.note) s.note = b.note();
    if (r && b.emulated) s.emulated = b.emulated();
    return s;
}

}  // namespace

std::vector<IsolatingBackend> isolating_backends() {
    std::vector<IsolatingBackend> out;
    for (const auto& b : kIsolating) out.push_back({b.name, b.level});
    return out;
}

std::vector<BackendStatus> probe_backends() {
    std::vector<BackendStatus> out;
    for (const auto& b : kIsolating) out.push_back(status_of(b));
    return out;
}

std::optional<BackendStatus> probe_backend(std::string_view name) {
    for (const auto& b : kIsolating)
        if (b.name == name) return status_of(b);
    return std::nullopt;
}

Result<void> probe_start(Backend& backend) {
    WorkerSpec spec;
    spec.argv = {"/bin/true"};
    auto p = backend.spawn(spec);
    if (!p) return tl::unexpected(p.error());
    (*p)->kill_and_wait();
    return {};
}

namespace {

using State = HostCheck::State;

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

HostCheck namespace_check(const char* name, const char* what, int flag) {
    HostCheck c{name};
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

HostCheck seccomp_check() {
    HostCheck c{"seccomp-bpf (libseccomp policy)"};
    auto prog = mech::build_seccomp_program();
    if (!prog) {
        c.state = State::fails;
        c.detail = prog.error().message;
        c.fix = "install libseccomp2 >= 2.5 (Debian: libseccomp-dev to build)";
        return c;
    }
    const int e = in_child([&] {
        if (auto f = mech::set_no_new_privs()) return f.err;
        if (auto f = mech::install_seccomp(*prog)) return f.err;
        return ::syscall(SYS_keyctl, 0, -3, 0) == -1 && errno == EPERM ? 0 : 200;
    });
    if (e == 0) {
        c.detail = std::to_string(mech::seccomp_rules().size()) + " rules, " +
                   std::to_string(prog->main.size()) + " BPF instructions; installs and denies";
    } else {
        c.state = State::fails;
        c.detail = e == 200 ? "installed, but a denied call got through"
                            : std::string("installing failed: ") + std::strerror(e);
        c.fix = "a kernel with CONFIG_SECCOMP_FILTER";
    }
    return c;
}

HostCheck capabilities_check() {
    HostCheck c{"capabilities dropped (bounding set too)"};
    const int last = mech::last_capability();
    const int e = in_child([last] {
        if (::unshare(CLONE_NEWUSER) != 0) return errno;
        if (auto f = mech::drop_all_capabilities(last)) return f.err;
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

HostCheck landlock_check() {
    HostCheck c{"Landlock"};
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

std::vector<HostCheck> cgroup_checks(const mech::CgroupSupport& s) {
    std::vector<HostCheck> out;
    for (const auto& ctl : s.controllers) {
        HostCheck c{"cgroup " + ctl.name + " limit"};
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
    HostCheck v2{"cgroup v2"};
    v2.state = State::info;
    v2.detail = s.v2_mounted ? "mounted; not used by this version (v1 is)" : "not mounted";
    out.push_back(std::move(v2));
    return out;
}

HostCheck interpreter_check(Backend* backend, const char* path, std::vector<std::string> argv) {
    HostCheck c{std::string(path) + " in the sandbox"};
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
    WorkerSpec spec;
    spec.argv = std::move(argv);
    const auto start = std::chrono::steady_clock::now();
    auto proc = backend->spawn(spec);
    if (!proc) {
        c.state = State::fails;
        c.detail = proc.error().message;
        return c;
    }
    std::optional<ExitStatus> ended;
    while (!(ended = (*proc)->try_wait()) &&
           std::chrono::steady_clock::now() - start < std::chrono::seconds(10))
        ::usleep(200);
    const ExitStatus st = ended ? *ended : (*proc)->kill_and_wait();
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

void append_landlock_tier_checks(std::vector<HostCheck>& out) {
    auto backend = LandlockBackend::create();
    HostCheck ids{"sandbox uids (landlock tier)"};
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
    HostCheck seccomp{"seccomp, landlock tier (no sockets, signal guard)"};
    auto prog = mech::build_seccomp_program(mech::SeccompTier::no_namespaces);
    const int e = prog ? in_child([&] {
        if (auto f = mech::set_no_new_privs()) return f.err;
        if (auto f = mech::install_seccomp(*prog, ::getppid(), 0)) return f.err;
        return ::socket(AF_INET, SOCK_STREAM, 0) == -1 && errno == EPERM ? 0 : 200;
    })
                       : EINVAL;
    if (e == 0) {
        seccomp.detail =
            std::to_string(mech::seccomp_rules(mech::SeccompTier::no_namespaces).size()) +
            " rules; installs and refuses socket()";
    } else {
        seccomp.state = State::fails;
        seccomp.detail = !prog      ? prog.error().message
                         : e == 200 ? "installed, but socket() got through"
                                    : std::string("installing failed: ") + std::strerror(e);
        seccomp.fix = "a kernel with CONFIG_SECCOMP_FILTER";
    }
    out.push_back(std::move(seccomp));
    out.push_back(
        end_to_end_check("landlock", LandlockBackend::probe(),
                         "Landlock, seccomp, rlimits, supervisor and exec of /usr/bin/true work"));
}

}  // namespace

std::vector<HostCheck> namespace_tier_checks() {
    std::vector<HostCheck> checks;
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
    checks.push_back(end_to_end_check("namespace", NamespaceBackend::probe(),
                                      "pivot_root, /proc, binds and exec of /usr/bin/true work"));
    return checks;
}

std::vector<HostCheck> process_tier_checks() {
    std::vector<HostCheck> checks;
    {
        HostCheck c{"no_new_privs"};
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
    for (auto& c : cgroup_checks(mech::detect_cgroup_support())) checks.push_back(std::move(c));
    append_landlock_tier_checks(checks);
    return checks;
}

std::vector<HostCheck> interpreter_checks(Backend* backend) {
    return {interpreter_check(backend, "/usr/bin/python3",
                              {"/usr/bin/python3", "-I", "-S", "-c", "pass"}),
            interpreter_check(backend, "/usr/bin/node", {"/usr/bin/node", "-e", "0"})};
}

}  // namespace sandflow::sandbox
