#include "sandbox/backend.hpp"

#include <mutex>
#include <optional>

#include "core/log.hpp"
#include "sandbox/gvisor/gvisor_backend.hpp"
#include "sandbox/host_probe.hpp"
#include "sandbox/landlock/landlock_backend.hpp"
#include "sandbox/microvm/microvm_backend.hpp"
#include "sandbox/namespace/namespace_backend.hpp"
#include "sandbox/none/none_backend.hpp"

namespace sandflow::sandbox {

namespace {

constexpr std::pair<IsolationLevel, std::string_view> kLevels[] = {
    {IsolationLevel::process, "process"},
    {IsolationLevel::os, "os"},
    {IsolationLevel::kernel, "kernel"},
    {IsolationLevel::vm, "vm"},
};

// A backend just made (its create()), as the interface.
template <class B>
Result<std::unique_ptr<Backend>> as_backend(Result<std::unique_ptr<B>> made) {
    if (!made) return tl::unexpected(made.error());
    return std::unique_ptr<Backend>(std::move(*made));
}

// What would provide a level that no backend here meets.
std::string_view how_to_get(IsolationLevel level) {
    switch (level) {
        case IsolationLevel::none:
        case IsolationLevel::process:
            return "a kernel with Landlock (Linux >= 5.13; inside a container, a seccomp profile "
                   "that allows landlock_create_ruleset, as Docker's default does)";
        case IsolationLevel::os:
            return "user namespaces: sysctl user.max_user_namespaces > 0 (and "
                   "kernel.apparmor_restrict_unprivileged_userns=0 where it exists), or, in a "
                   "container, a seccomp profile that allows unshare/clone with namespace flags "
                   "(docker run --security-opt seccomp=unconfined)";
        case IsolationLevel::kernel:
            return "gVisor: the `runsc` package (Debian: apt-get install runsc) and a runtime "
                   "running as root";
        case IsolationLevel::vm:
            return "the microvm backend: QEMU (Debian: apt-get install qemu-system-x86) and its "
                   "guest image (make microvm-image); KVM (/dev/kvm) makes it fast, without it "
                   "it runs emulated";
    }
    return "";
}

}  // namespace

std::string_view level_name(IsolationLevel level) {
    for (const auto& [l, n] : kLevels)
        if (l == level) return n;
    return "none";
}

Result<IsolationLevel> parse_level(std::string_view name) {
    for (const auto& [l, n] : kLevels)
        if (n == name) return l;
    return fail(Errc::invalid_argument,
                "unknown isolation level '" + std::string(name) +
                    "'; levels, weakest first: process (landlock and up), os (namespace and "
                    "up), kernel (gvisor, microvm), vm (microvm)",
                {{"isolation", std::string(name)}});
}

std::vector<std::string_view> backend_names() {
    return {"microvm", "gvisor", "namespace", "landlock", "none"};
}

Result<const SandboxLimits*> check_tmp_worker(const WorkerSpec& spec, const SandboxLimits& defaults,
                                              std::string_view whose) {
    if (spec.argv.empty() || spec.argv[0].empty() || spec.argv[0][0] != '/')
        return fail(Errc::internal, "spawn: argv[0] must be an absolute path");
    if (spec.workdir != "/tmp")
        return fail(Errc::invalid_argument,
                    std::string(whose) + " working directory is /tmp, not '" + spec.workdir + "'");
    const SandboxLimits& limits = spec.limits ? *spec.limits : defaults;
    if (auto ok = check_positive(limits); !ok) return tl::unexpected(ok.error());
    if (auto ok = check_shared_dirs(spec.shared); !ok) return tl::unexpected(ok.error());
    return &limits;
}

std::vector<std::string> clean_worker_env() {
    // UTF-8 I/O without depending on installed locales; nothing else.
    return {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "HOME=/tmp"};
}

Result<Selection> select_backend(IsolationLevel required) {
    Selection s;
    std::string passed;
    for (const auto& candidate : isolating_backends()) {
        if (candidate.level < required) continue;
        const BackendStatus b = *probe_backend(candidate.name);
        if (b.runs && b.emulated && required != candidate.level) {
            passed += b.name + " runs here only " + b.note + "; ";
            continue;
        }
        if (b.runs) {
            s.backend = b.name;
            s.reason =
                passed + b.name + " meets isolation level " + std::string(level_name(required));
            return s;
        }
        passed += b.name + " cannot run here (" + b.why + "); ";
    }
    return fail(Errc::sandbox_unavailable,
                "no sandbox backend that meets isolation level " +
                    std::string(level_name(required)) + " can run on this host" +
                    (passed.empty() ? std::string(": none provides it here")
                                    : ": " + passed.substr(0, passed.size() - 2)) +
                    ". It needs " + std::string(how_to_get(required)) +
                    "; `sandflow doctor` shows every backend. Trusted scripts only: "
                    "--insecure-no-sandbox runs them with no isolation",
                {{"backend", "auto"}, {"isolation", std::string(level_name(required))}});
}

Result<std::unique_ptr<Backend>> make_backend(std::string_view name,
                                              const BackendOptions& options) {
    if (name == "auto") {
        auto pick = select_backend(options.isolation);
        if (!pick) {
            if (!options.allow_insecure) return tl::unexpected(pick.error());
            spdlog::warn("{}; falling back to 'none' as --insecure-no-sandbox allows",
                         pick.error().message);
            return make_backend("none", options);
        }
        static std::once_flag logged;
        std::call_once(logged, [&] {
            spdlog::info("sandbox backend: {} (auto: {})", pick->backend, pick->reason);
        });
        return make_backend(pick->backend, options);
    }
    Result<std::unique_ptr<Backend>> made = fail(Errc::internal, "no backend");
    if (name == "namespace") {
        NamespaceOptions ns;
        ns.limits = options.limits;
        made = as_backend(NamespaceBackend::create(ns));
    } else if (name == "landlock") {
        LandlockOptions ll;
        ll.limits = options.limits;
        made = as_backend(LandlockBackend::create(ll));
    } else if (name == "gvisor") {
        GvisorOptions g;
        g.limits = options.limits;
        if (!options.gvisor_platform.empty()) g.platform = options.gvisor_platform;
        made = as_backend(GvisorBackend::create(g));
    } else if (name == "microvm") {
        MicrovmOptions m;
        m.limits = options.limits;
        made = as_backend(MicrovmBackend::create(m));
    } else if (name == "none") {
        if (!options.allow_insecure)
            return fail(Errc::sandbox_unavailable,
                        "the 'none' backend runs actor scripts with no isolation at all; pass "
                        "--insecure-no-sandbox (config: insecure_no_sandbox = true) to allow it, "
                        "for trusted scripts only",
                        {{"backend", "none"}});
        spdlog::warn(
            "INSECURE: backend 'none' runs actor scripts as plain subprocesses with NO "
            "isolation; they can read and write your files, use the network and signal your "
            "processes. Use it for trusted scripts in development only.");
        return std::make_unique<NoneBackend>(options.limits);
    } else {
        std::string known = "auto";
        for (auto n : backend_names()) known += ", " + std::string(n);
        return fail(Errc::invalid_argument,
                    "unknown sandbox backend '" + std::string(name) + "'; known backends: " + known,
                    {{"backend", std::string(name)}});
    }
    if (made && (*made)->level() < options.isolation)
        return fail(Errc::invalid_argument,
                    "backend '" + std::string(name) + "' provides isolation level " +
                        std::string(level_name((*made)->level())) + ", below the required " +
                        std::string(level_name(options.isolation)) +
                        "; choose a stronger backend, lower --isolation, or use --backend auto",
                    {{"backend", std::string(name)},
                     {"isolation", std::string(level_name(options.isolation))}});
    return made;
}

}  // namespace sandflow::sandbox
