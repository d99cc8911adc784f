#include "sandbox/mechanisms/landlock.hpp"

#include <fcntl.h>
#include <linux/landlock.h>
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

}  // namespace

LandlockPlan make_landlock_plan() {
    LandlockPlan p;
    const long abi =
        ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (abi <= 0) return p;
    p.abi = static_cast<int>(abi);
    std::uint64_t fs = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;  // ABI 1: bits 0..12
    if (abi >= 2) fs |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3) fs |= kFsTruncate;
    if (abi >= 5) fs |= kFsIoctlDev;
    p.handled_fs = fs;
    if (abi >= 4) p.handled_net = kNetBindTcp | kNetConnectTcp;
    if (abi >= 6) p.scoped = kScopeAbstractUnix | kScopeSignal;
    const std::uint64_t dev = kRead | LANDLOCK_ACCESS_FS_WRITE_FILE | kFsTruncate | kFsIoctlDev;
    p.rules = {{
        {"/", LANDLOCK_ACCESS_FS_READ_DIR},
        {"/usr", kRead | LANDLOCK_ACCESS_FS_EXECUTE},
        {"/etc", kRead},
        {"/proc", kRead},
        {"/dev", dev & fs},
        {"/tmp", fs & ~LANDLOCK_ACCESS_FS_EXECUTE},
    }};
    for (auto& r : p.rules) r.access &= fs;
    return p;
}

ChildFailure apply_landlock(const LandlockPlan& plan) {
    if (plan.abi <= 0) return {};
    RulesetAttr attr{plan.handled_fs, plan.handled_net, plan.scoped};
    // Older kernels reject the fields they do not know: pass only those of this ABI.
    const std::size_t size = plan.abi >= 6   ? sizeof attr
                             : plan.abi >= 4 ? offsetof(RulesetAttr, scoped)
                                             : offsetof(RulesetAttr, handled_access_net);
    const int ruleset = static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, size, 0));
    if (ruleset < 0) return failed_at(kStepLandlock);
    for (const auto& r : plan.rules) {
        landlock_path_beneath_attr pb{};
        pb.allowed_access = r.access;
        pb.parent_fd = ::open(r.path, O_PATH | O_CLOEXEC);
        if (pb.parent_fd < 0) {
            const ChildFailure f = failed_at(kStepLandlock);
            ::close(ruleset);
            return f;
        }
        const long rc =
            ::syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
        const ChildFailure f = failed_at(kStepLandlock);
        ::close(pb.parent_fd);
        if (rc != 0) {
            ::close(ruleset);
            return f;
        }
    }
    const long rc = ::syscall(SYS_landlock_restrict_self, ruleset, 0);
    const ChildFailure f = failed_at(kStepLandlock);
    ::close(ruleset);
    return rc == 0 ? ChildFailure{} : f;
}

}  // namespace sandflow::sandbox::mech
