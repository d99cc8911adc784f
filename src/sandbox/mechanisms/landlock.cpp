#include "sandbox/mechanisms/landlock.hpp"

#include <fcntl.h>
#include <linux/landlock.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>

namespace sandflow::sandbox::mech {

namespace {

// Newer than Debian 12's headers (which stop at ABI 2); values from the kernel's uapi.
constexpr std::uint64_t kFsTruncate = 1ULL << 14;  // ABI 3
constexpr std::uint64_t kFsIoctlDev = 1ULL << 15;  // ABI 5
constexpr std::uint64_t kNetBindTcp = 1ULL << 0;   // ABI 4
constexpr std::uint64_t kNetConnectTcp = 1ULL << 1;
constexpr std::uint64_t kScopeAbstractUnix = 1ULL << 0;  // ABI 6
constexpr std::uint64_t kScopeSignal = 1ULL << 1;

struct RulesetAttr {  // struct landlock_ruleset_attr as of ABI 6
    std::uint64_t handled_access_fs;
    std::uint64_t handled_access_net;
    std::uint64_t scoped;
};

constexpr std::uint64_t kRead = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
// The rights the kernel accepts on a rule for a file that is not a folder.
constexpr std::uint64_t kFileRights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                                      LANDLOCK_ACCESS_FS_READ_FILE | kFsTruncate | kFsIoctlDev;

std::uint64_t rights(LandlockAccess a, std::uint64_t fs) {
    switch (a) {
        case LandlockAccess::list:
            return LANDLOCK_ACCESS_FS_READ_DIR;
        case LandlockAccess::read:
            return kRead;
        case LandlockAccess::read_exec:
            return kRead | LANDLOCK_ACCESS_FS_EXECUTE;
        case LandlockAccess::read_write:
            return fs & ~LANDLOCK_ACCESS_FS_EXECUTE;
        case LandlockAccess::device:
            return LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE | kFsTruncate |
                   kFsIoctlDev;
        case LandlockAccess::read_file:
            return LANDLOCK_ACCESS_FS_READ_FILE;
    }
    return 0;
}

}  // namespace

int landlock_abi() {
    static const int abi = [] {
        const long v =
            ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
        return v > 0 ? static_cast<int>(v) : 0;
    }();
    return abi;
}

LandlockPlan make_landlock_plan(const std::vector<LandlockRule>& rules, bool own_proc) {
    LandlockPlan p;
    const int abi = landlock_abi();
    if (abi <= 0) return p;
    p.abi = abi;
    std::uint64_t fs = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;  // ABI 1: bits 0..12
    if (abi >= 2) fs |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3) fs |= kFsTruncate;
    if (abi >= 5) fs |= kFsIoctlDev;
    p.handled_fs = fs;
    if (abi >= 4) p.handled_net = kNetBindTcp | kNetConnectTcp;
    if (abi >= 6) p.scoped = kScopeAbstractUnix | kScopeSignal;
    for (const auto& r : rules) {
        struct stat st {};
        if (::stat(r.path.c_str(), &st) != 0) continue;
        std::uint64_t access = rights(r.access, fs) & fs;
        if (!S_ISDIR(st.st_mode))
            access &= kFileRights;
        else if (r.access == LandlockAccess::device)
            access |= LANDLOCK_ACCESS_FS_READ_DIR;  // a folder of devices may be listed
        if (access != 0) p.rules.push_back({r.path, access});
    }
    p.own_proc = own_proc;
    p.own_proc_access = kRead;
    return p;
}

void add_sandbox_folder_rule(LandlockPlan& plan, std::string path, LandlockAccess access) {
    if (plan.abi <= 0) return;
    const std::uint64_t a = rights(access, plan.handled_fs) & plan.handled_fs;
    if (a != 0) plan.rules.push_back({std::move(path), a});
}

namespace {

ChildFailure add_rule(int ruleset, int parent_fd, std::uint64_t access) {
    landlock_path_beneath_attr pb{};
    pb.allowed_access = access;
    pb.parent_fd = parent_fd;
    const long rc = ::syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
    return rc == 0 ? ChildFailure{} : failed_at(kStepLandlock);
}

}  // namespace

ChildFailure apply_landlock(const LandlockPlan& plan) {
    if (plan.abi <= 0) return {};
    RulesetAttr attr{plan.handled_fs, plan.handled_net, plan.scoped};
    // Older kernels reject the fields they do not know: pass only those of this ABI.
    const std::size_t size = plan.abi >= 6   ? sizeof attr
                             : plan.abi >= 4 ? offsetof(RulesetAttr, scoped)
                                             : offsetof(RulesetAttr, handled_access_net);
    const int ruleset = static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, size, 0));
    if (ruleset < 0) return failed_at(kStepLandlock);
    auto add_path = [ruleset](const char* path, std::uint64_t access) {
        const int fd = ::open(path, O_PATH | O_CLOEXEC);
        if (fd < 0) return failed_at(kStepLandlock);
        const ChildFailure f = add_rule(ruleset, fd, access);
        ::close(fd);
        return f;
    };
    ChildFailure f;
    for (const auto& r : plan.rules) {
        f = add_path(r.path.c_str(), r.access);
        if (f) break;
    }
    // /proc/self is a link the kernel resolves to this process's own folder.
    if (!f && plan.own_proc) f = add_path("/proc/self/", plan.own_proc_access);
    if (!f && ::syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) f = failed_at(kStepLandlock);
    ::close(ruleset);
    return f;
}

}  // namespace sandflow::sandbox::mech
