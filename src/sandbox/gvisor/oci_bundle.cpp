#include "sandbox/gvisor/oci_bundle.hpp"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <fstream>

#include "core/json.hpp"
#include "sandbox/host_root.hpp"
#include "sandbox/mechanisms/rlimits.hpp"
#include "sandbox/mechanisms/seccomp_policy.hpp"

namespace sandflow::sandbox::gvisor {

namespace {

namespace fs = std::filesystem;

// Mount points the root must hold: gVisor cannot create them in a read-only root. /dev and
// /sys are gVisor's own, mounted whatever the spec says.
constexpr const char* kMountPoints[] = {"usr", "tmp", "proc", "dev", "sys", "etc"};
constexpr const char* kLdSoCache = "/etc/ld.so.cache";
// Debian's alternatives: links into /usr through which some libraries are found
// (libblas.so.3, which numpy loads).
constexpr const char* kAlternatives = "/etc/alternatives";

const char* rlimit_name(int resource) {
    switch (resource) {
        case RLIMIT_NOFILE:
            return "RLIMIT_NOFILE";
        case RLIMIT_NPROC:
            return "RLIMIT_NPROC";
        case RLIMIT_FSIZE:
            return "RLIMIT_FSIZE";
        case RLIMIT_CORE:
            return "RLIMIT_CORE";
        case RLIMIT_CPU:
            return "RLIMIT_CPU";
        default:
            return nullptr;
    }
}

Result<void> write_text(const fs::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) return tl::unexpected(system_error("write " + path.string(), errno ? errno : EIO));
    return {};
}

json::object bind_ro(const std::string& path, const std::string& source = {}) {
    return {{"destination", path},
            {"type", "bind"},
            {"source", source.empty() ? path : source},
            {"options", json::array{"rbind", "ro"}}};
}

// An empty tmpfs no one inside may list or enter, laid over a folder of gVisor's own that
// the worker has no use for.
json::object masked(const std::string& path) {
    return {{"destination", path},
            {"type", "tmpfs"},
            {"source", "tmpfs"},
            {"options", json::array{"ro", "size=4096", "mode=000"}}};
}

}  // namespace

json::object oci_seccomp() {
    // The namespace tier's policy: gVisor's kernel gives the sandbox its own network stack and
    // process table, as namespaces do. Each rule is an OCI rule: the call fails with the rule's
    // errno, under the rule's one condition on an argument.
    json::array syscalls;
    for (const auto& r : mech::seccomp_rules(mech::SeccompTier::namespaces)) {
        // runsc fails a denied call with EPERM whatever errnoRet says; a rule with another
        // errno (clone3's ENOSYS, which makes libc fall back to clone) is left to gVisor's
        // kernel, which does not implement those calls.
        if (r.errno_value != EPERM) continue;
        json::object rule{{"names", json::array{r.syscall}}, {"action", "SCMP_ACT_ERRNO"}};
        if (r.arg >= 0) {
            // (arg & mask) == value; the tier has no "not equal" rules (OCI cannot mask one).
            rule["args"] = json::array{json::object{{"index", r.arg},
                                                    {"op", "SCMP_CMP_MASKED_EQ"},
                                                    {"value", r.mask},
                                                    {"valueTwo", r.value}}};
        }
        syscalls.push_back(std::move(rule));
    }
    return {{"defaultAction", "SCMP_ACT_ALLOW"},
            {"architectures", json::array{"SCMP_ARCH_X86_64"}},
            {"syscalls", std::move(syscalls)}};
}

RootLayout read_root_layout() {
    RootLayout l;
    for (auto& e : host_root_entries()) {
        if (!e.target.empty())
            l.links.emplace_back(std::move(e.name), std::move(e.target));
        else
            l.bound_dirs.push_back(std::move(e.name));
    }
    char buf[PATH_MAX];
    const ssize_t n = ::readlink("/etc/localtime", buf, sizeof buf - 1);
    if (n > 0 && std::string_view(buf, static_cast<std::size_t>(n)).starts_with("/usr/"))
        l.localtime.assign(buf, static_cast<std::size_t>(n));
    l.ld_so_cache = ::access(kLdSoCache, R_OK) == 0;
    struct stat st {};
    l.alternatives = ::stat(kAlternatives, &st) == 0 && S_ISDIR(st.st_mode);
    return l;
}

Result<void> write_root(const fs::path& root, const RootLayout& layout) {
    std::error_code ec;
    auto failed = [&](const std::string& what) {
        return tl::unexpected(
            system_error("writing the gvisor sandbox's root folder: " + what, ec.value()));
    };
    if (!fs::create_directory(root, ec) || ec) return failed("create " + root.string());
    fs::permissions(root, fs::perms(0755), ec);
    for (const char* dir : kMountPoints) {
        fs::create_directory(root / dir, ec);
        if (ec) return failed("create " + (root / dir).string());
    }
    fs::permissions(root / "tmp", fs::perms(01777), ec);
    for (const auto& [name, target] : layout.links) {
        fs::create_symlink(target, root / name, ec);
        if (ec) return failed("link " + (root / name).string());
    }
    for (const auto& dir : layout.bound_dirs) {
        fs::create_directory(root / dir, ec);
        if (ec) return failed("create " + (root / dir).string());
    }

    // A minimal /etc, generated: nothing of the host's configuration or secrets.
    const fs::path etc = root / "etc";
    const std::string uid = std::to_string(kSandboxUid), gid = std::to_string(kSandboxGid);
    const std::string user = kSandboxUser, host = kSandboxHostname;
    const std::pair<const char*, std::string> files[] = {
        {"passwd", user + ":x:" + uid + ":" + gid + ":Sandflow sandbox:/tmp:/usr/sbin/nologin\n"},
        {"group", user + ":x:" + gid + ":\n"},
        {"hostname", host + "\n"},
        {"hosts", "127.0.0.1\tlocalhost " + host + "\n::1\tlocalhost\n"},
        {"nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n"},
    };
    for (const auto& [name, text] : files)
        if (auto ok = write_text(etc / name, text); !ok) return ok;
    if (!layout.localtime.empty()) {
        fs::create_symlink(layout.localtime, etc / "localtime", ec);
        if (ec) return failed("link /etc/localtime");
    }
    // The mount point of the host's ld.so.cache.
    if (layout.ld_so_cache)
        if (auto ok = write_text(etc / "ld.so.cache", ""); !ok) return ok;
    if (layout.alternatives) {
        fs::create_directory(etc / "alternatives", ec);
        if (ec)
            return tl::unexpected(
                system_error("create " + (etc / "alternatives").string(), ec.value()));
    }
    return {};
}

std::string oci_config(const BundleSpec& spec, const RootLayout& layout) {
    json::array args, env, rlimits;
    for (const auto& a : spec.argv) args.emplace_back(a);
    for (const auto& e : spec.env) env.emplace_back(e);
    // The shared rlimits, as they would be without a pids cgroup: gVisor's kernel counts
    // every task of the sandbox's user against RLIMIT_NPROC, threads included, so
    // min(nproc, pids), plus the init's tasks, is the pids limit inside.
    for (const auto& e :
         mech::make_rlimit_plan(spec.limits,
                                mech::effective_nproc(spec.limits, false) + spec.init_tasks)
             .entries) {
        const char* name = rlimit_name(e.resource);
        if (!name) continue;
        rlimits.push_back(json::object{{"type", name},
                                       {"soft", static_cast<std::uint64_t>(e.value.rlim_cur)},
                                       {"hard", static_cast<std::uint64_t>(e.value.rlim_max)}});
    }

    json::array mounts;
    mounts.push_back(bind_ro("/usr"));
    for (const auto& dir : layout.bound_dirs) mounts.push_back(bind_ro("/" + dir));
    if (layout.ld_so_cache) {
        auto cache = bind_ro(kLdSoCache);
        cache["options"] = json::array{"bind", "ro"};
        mounts.push_back(std::move(cache));
    }
    if (layout.alternatives) mounts.push_back(bind_ro(kAlternatives));
    for (const auto& d : spec.shared) mounts.push_back(bind_ro(mounted_path(d), d.host));
    mounts.push_back(json::object{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}});
    // gVisor's emulated /sys and /proc/sys hold nothing of the host's, but nothing the worker
    // needs either: hidden, as they are in the namespace tier.
    mounts.push_back(masked("/sys"));
    mounts.push_back(masked("/proc/sys"));
    // gVisor's tmpfs takes size= (and mode=) but no inode count: the memory limit, which
    // holds the tmpfs's pages, caps the number of files instead. nosuid and nodev are not
    // options gVisor knows (it warns and ignores them); no_new_privs makes set-id bits inert.
    mounts.push_back(json::object{
        {"destination", "/tmp"},
        {"type", "tmpfs"},
        {"source", "tmpfs"},
        {"options",
         json::array{"noexec", "size=" + std::to_string(spec.limits.tmpfs_bytes), "mode=1777"}}});

    const json::array no_caps;
    json::object config{
        {"ociVersion", "1.0.2"},
        {"process",
         json::object{
             {"terminal", false},
             {"user", json::object{{"uid", kSandboxUid}, {"gid", kSandboxGid}}},
             {"args", std::move(args)},
             {"env", std::move(env)},
             {"cwd", spec.workdir},
             {"capabilities", json::object{{"bounding", no_caps},
                                           {"effective", no_caps},
                                           {"inheritable", no_caps},
                                           {"permitted", no_caps},
                                           {"ambient", no_caps}}},
             {"rlimits", std::move(rlimits)},
             {"noNewPrivileges", true},
         }},
        {"root", json::object{{"path", spec.root}, {"readonly", true}}},
        {"hostname", kSandboxHostname},
        {"mounts", std::move(mounts)},
        {"linux",
         json::object{{"namespaces",
                       json::array{json::object{{"type", "pid"}}, json::object{{"type", "network"}},
                                   json::object{{"type", "ipc"}}, json::object{{"type", "uts"}},
                                   json::object{{"type", "mount"}}}},
                      {"seccomp", oci_seccomp()}}},
    };
    return to_json_string(config);
}

}  // namespace sandflow::sandbox::gvisor
