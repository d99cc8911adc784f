#include "cli/common.hpp"

#include <cstdio>

#include "core/log.hpp"
#include "sandbox/namespace/namespace_backend.hpp"

namespace sandflow::cli {

int exit_status_for(const Error& e) {
    switch (e.code) {
        case Errc::script:
            return kExitScriptError;
        case Errc::invalid_argument:
        case Errc::metadata:
            return kExitUsage;
        default:
            return kExitSandbox;
    }
}

int report(const Error& e) {
    std::fprintf(stderr, "sandflow: error: %s\n", e.message.c_str());
    return exit_status_for(e);
}

void add_backend_flags(CLI::App& cmd, BackendFlags& flags) {
    cmd.add_option("--backend", flags.name,
                   "Sandbox backend: auto (the strongest this host supports), namespace, gvisor "
                   "(gVisor's runsc; chosen by name only), or none")
        ->default_str("auto");
    cmd.add_option("--gvisor-platform", flags.gvisor_platform,
                   "gvisor backend: the platform runsc runs on (ptrace, systrap, kvm)")
        ->default_str("ptrace");
    cmd.add_flag("--insecure-no-sandbox", flags.insecure_no_sandbox,
                 "Allow the 'none' backend: run scripts as plain subprocesses with NO isolation "
                 "(trusted scripts, development only)");
}

Result<std::unique_ptr<sandbox::Backend>> open_backend(const BackendFlags& flags,
                                                       const sandbox::SandboxLimits& limits) {
    sandbox::BackendOptions opts;
    opts.allow_insecure = flags.insecure_no_sandbox;
    opts.limits = limits;
    opts.gvisor_platform = flags.gvisor_platform;
    if (flags.name == "auto") {
        // The strongest backend that runs here: the namespace sandbox (probed once, by
        // starting one). `none` only when the user explicitly allowed no isolation.
        auto probe = sandbox::NamespaceBackend::probe();
        if (probe) return sandbox::make_backend("namespace", opts);
        if (!flags.insecure_no_sandbox)
            return fail(
                Errc::sandbox_unavailable,
                "no isolating sandbox backend can run on this host: " + probe.error().message +
                    ". Fix that (see `sandflow doctor`), or pass --insecure-no-sandbox "
                    "to run trusted scripts without isolation",
                {{"backend", "auto"}});
        spdlog::warn(
            "the namespace sandbox cannot run here ({}); falling back to 'none' as "
            "--insecure-no-sandbox allows",
            probe.error().message);
        return sandbox::make_backend("none", opts);
    }
    return sandbox::make_backend(flags.name, opts);
}

}  // namespace sandflow::cli
