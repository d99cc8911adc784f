#include "sandbox/backend.hpp"

#include "core/log.hpp"
#include "sandbox/gvisor/gvisor_backend.hpp"
#include "sandbox/namespace/namespace_backend.hpp"
#include "sandbox/none/none_backend.hpp"

namespace sandflow::sandbox {

std::vector<std::string_view> backend_names() {
    return {"gvisor", "namespace", "none"};
}

std::vector<std::string> clean_worker_env() {
    // UTF-8 I/O without depending on installed locales; nothing else.
    return {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "HOME=/tmp"};
}

Result<std::unique_ptr<Backend>> make_backend(std::string_view name,
                                              const BackendOptions& options) {
    if (name == "namespace") {
        NamespaceOptions ns;
        ns.limits = options.limits;
        auto b = NamespaceBackend::create(ns);
        if (!b) return tl::unexpected(b.error());
        return std::unique_ptr<Backend>(std::move(*b));
    }
    if (name == "gvisor") {
        GvisorOptions g;
        g.limits = options.limits;
        if (!options.gvisor_platform.empty()) g.platform = options.gvisor_platform;
        auto b = GvisorBackend::create(g);
        if (!b) return tl::unexpected(b.error());
        return std::unique_ptr<Backend>(std::move(*b));
    }
    if (name == "none") {
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
    }
    std::string known;
    for (auto n : backend_names()) known += (known.empty() ? "" : ", ") + std::string(n);
    return fail(Errc::invalid_argument,
                "unknown sandbox backend '" + std::string(name) + "'; known backends: " + known,
                {{"backend", std::string(name)}});
}

}  // namespace sandflow::sandbox
