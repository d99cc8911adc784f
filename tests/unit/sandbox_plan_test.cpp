// The sandbox's plans as data, without starting a sandbox: the namespace tier's mount plan,
// the Landlock rules of both tiers, the seccomp policy (its compiled programs run here by a
// classic-BPF interpreter, so each tier's refusals are checked call by call), the gVisor
// bundle's config. What the kernel makes of them is the worker and security suites' part.
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/landlock.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <span>

#include "core/json.hpp"
#include "sandbox/gvisor/gvisor_backend.hpp"
#include "sandbox/gvisor/oci_bundle.hpp"
#include "sandbox/landlock/landlock_backend.hpp"
#include "sandbox/mechanisms/landlock.hpp"
#include "sandbox/mechanisms/seccomp_policy.hpp"
#include "sandbox/namespace/mount_ns.hpp"
#include "sandbox/namespace/namespace_backend.hpp"
#include "sandbox/shared_dir.hpp"

using namespace sandflow;
using namespace sandflow::sandbox;

namespace {

// ---- mount plan ---------------------------------------------------------------------------

using Kind = ns::MountOp::Kind;

ns::MountPlan mount_plan(ns::MountOptions o = {}) {
    if (o.tmpfs_bytes == 0) o.tmpfs_bytes = 5 << 20;
    if (o.tmpfs_inodes == 0) o.tmpfs_inodes = 77;
    auto plan = ns::make_mount_plan(o);
    EXPECT_TRUE(plan) << plan.error().message;
    return plan ? std::move(*plan) : ns::MountPlan{};
}

std::vector<const ns::MountOp*> ops_of(const ns::MountPlan& plan, Kind kind) {
    std::vector<const ns::MountOp*> v;
    for (const auto& op : plan.ops)
        if (op.kind == kind) v.push_back(&op);
    return v;
}

TEST(MountPlan, StartsPrivateOnAFreshRootAndEndsInItReadOnly) {
    const auto plan = mount_plan();
    ASSERT_GE(plan.ops.size(), 4u);
    EXPECT_EQ(plan.ops[0].kind, Kind::make_private);
    EXPECT_EQ(plan.ops[0].target, "/");
    EXPECT_EQ(plan.ops[0].flags, static_cast<unsigned long>(MS_REC | MS_PRIVATE));
    EXPECT_EQ(plan.ops[1].kind, Kind::tmpfs);
    const std::string stage = plan.ops[1].target;
    const auto& pivot = plan.ops[plan.ops.size() - 2];
    EXPECT_EQ(pivot.kind, Kind::pivot_root);
    EXPECT_EQ(pivot.target, stage);
    const auto& last = plan.ops.back();
    EXPECT_EQ(last.kind, Kind::restrict);
    EXPECT_EQ(last.target, "/");
    EXPECT_TRUE(last.attr_set & MOUNT_ATTR_RDONLY);
    // Everything else is assembled beneath the stage, before the pivot.
    for (std::size_t i = 1; i + 2 < plan.ops.size(); ++i)
        EXPECT_TRUE(plan.ops[i].target.starts_with(stage)) << plan.ops[i].what;
    for (const auto& op : plan.ops) EXPECT_FALSE(op.what.empty());
}

TEST(MountPlan, OnlyTheInterpretersTheLoaderCacheAndFiveDevicesAreBoundEachRestricted) {
    const auto plan = mount_plan();
    const std::set<std::string> allowed = {"/usr",
                                           "/bin",
                                           "/sbin",
                                           "/lib",
                                           "/lib32",
                                           "/lib64",
                                           "/libx32",
                                           "/etc/ld.so.cache",
                                           "/etc/alternatives",
                                           "/dev/null",
                                           "/dev/zero",
                                           "/dev/full",
                                           "/dev/random",
                                           "/dev/urandom"};
    std::set<std::string> bound;
    for (std::size_t i = 0; i < plan.ops.size(); ++i) {
        const auto& op = plan.ops[i];
        if (op.kind != Kind::bind) continue;
        EXPECT_TRUE(allowed.contains(op.source)) << op.source;
        bound.insert(op.source);
        // The next step restricts the same mount: never exec of setuid, devices only in /dev.
        ASSERT_LT(i + 1, plan.ops.size());
        const auto& r = plan.ops[i + 1];
        EXPECT_EQ(r.kind, Kind::restrict) << op.source;
        EXPECT_EQ(r.target, op.target) << op.source;
        EXPECT_EQ(r.recursive, op.recursive) << op.source;
        EXPECT_TRUE(r.attr_set & MOUNT_ATTR_NOSUID) << op.source;
        if (!op.source.starts_with("/dev/")) {
            EXPECT_TRUE(r.attr_set & MOUNT_ATTR_RDONLY) << op.source;
            EXPECT_TRUE(r.attr_set & MOUNT_ATTR_NODEV) << op.source;
        } else {
            EXPECT_TRUE(r.attr_set & MOUNT_ATTR_NOEXEC) << op.source;
        }
    }
    EXPECT_TRUE(bound.contains("/usr"));
    for (const char* dev : {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"})
        EXPECT_TRUE(bound.contains(dev)) << dev;
}

// A folder of this test's own, removed at the end: a package set's host side.
struct TempFolder {
    std::string path;
    TempFolder() {
        char tmpl[] = "/tmp/sandflow-plan-XXXXXX";
        path = ::mkdtemp(tmpl) ? tmpl : "";
        if (!path.empty()) ::chmod(path.c_str(), 0755);
    }
    ~TempFolder() { ::rmdir(path.c_str()); }
};

TEST(MountPlan, PackageSetsAreBoundReadOnlyUnderPackagesAndNothingBesideThem) {
    TempFolder set;
    ASSERT_FALSE(set.path.empty());
    ns::MountOptions o;
    o.shared = {{set.path, "python/mine"}};
    const auto plan = mount_plan(o);
    // The host's folder is copied before the new root (on the host's /tmp) can hide it.
    ASSERT_GE(plan.ops.size(), 3u);
    EXPECT_EQ(plan.ops[1].kind, Kind::copy_tree);
    EXPECT_EQ(plan.ops[1].source, set.path);
    EXPECT_TRUE(plan.ops[1].recursive);
    ASSERT_EQ(plan.ops[2].kind, Kind::tmpfs);
    const std::string stage = plan.ops[2].target;
    bool attached = false;
    for (std::size_t i = 0; i + 1 < plan.ops.size(); ++i) {
        const auto& op = plan.ops[i];
        EXPECT_FALSE(op.kind == Kind::bind && op.source == set.path);
        if (op.kind != Kind::attach_tree) continue;
        attached = true;
        EXPECT_EQ(op.slot, plan.ops[1].slot);
        EXPECT_EQ(op.target, stage + "/packages/python/mine");
        const auto& r = plan.ops[i + 1];
        EXPECT_EQ(r.kind, Kind::restrict);
        EXPECT_EQ(r.target, op.target);
        EXPECT_TRUE(r.recursive);
        // Read-only, no set-id, no devices; mappable (native extension modules).
        EXPECT_EQ(r.attr_set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    }
    EXPECT_TRUE(attached);
    // Its parents are made on the sandbox's own (read-only) root, not bound from the host.
    std::set<std::string> made;
    for (const auto* op : ops_of(plan, Kind::mkdir)) made.insert(op->target);
    EXPECT_TRUE(made.contains(stage + "/packages"));
    EXPECT_TRUE(made.contains(stage + "/packages/python"));
    // A bad set fails the plan, naming the folder.
    o.shared = {{"/proc/self", "python/p"}};
    auto bad = ns::make_mount_plan(o);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message.find("/proc/self"), std::string::npos) << bad.error().message;
}

TEST(SharedDirs, RefuseWhatNoSandboxMaySeeAndMalformedNames) {
    TempFolder ok;
    ASSERT_FALSE(ok.path.empty());
    EXPECT_TRUE(check_shared_dirs({{ok.path, "python/a"}, {"/usr/lib", "javascript/a"}}));
    const std::vector<std::vector<SharedDir>> refused = {
        {{"/", "python/root"}},
        {{"/proc/1", "python/p"}},
        {{"/sys/kernel", "python/s"}},
        {{"/dev", "python/d"}},
        {{"usr/lib", "python/rel"}},              // relative
        {{"/usr/lib/../lib", "python/dots"}},     // not canonical
        {{ok.path + "/missing", "python/gone"}},  // not there
        {{"/usr/bin/python3", "python/file"}},    // a file
        {{ok.path, "python"}},                    // no set part
        {{ok.path, "python/.."}},
        {{ok.path, "python/a/b"}},
        {{ok.path, "python/a b"}},
        {{ok.path, "python/a"}, {"/usr/lib", "python/a"}},  // the same name twice
    };
    for (const auto& dirs : refused) {
        auto r = check_shared_dirs(dirs);
        EXPECT_FALSE(r) << dirs.back().host << " as " << dirs.back().name;
        if (!r) {
            EXPECT_EQ(r.error().code, Errc::invalid_argument);
        }
    }
    // Closed to other users (as mkdtemp makes it): refused, saying how to open it.
    TempFolder closed;
    ::chmod(closed.path.c_str(), 0700);
    auto shut = check_shared_dirs({{closed.path, "python/closed"}});
    ASSERT_FALSE(shut);
    EXPECT_NE(shut.error().message.find("chmod o+rx " + closed.path), std::string::npos)
        << shut.error().message;
    std::vector<SharedDir> many;
    for (std::size_t i = 0; i <= limits::kMaxSharedDirs; ++i)
        many.push_back({ok.path, "python/s" + std::to_string(i)});
    EXPECT_FALSE(check_shared_dirs(many));
}

TEST(MountPlan, EtcIsGeneratedAndNamesOnlyTheSandboxUser) {
    ns::MountOptions o;
    o.user_name = "actor";
    o.hostname = "box";
    const auto plan = mount_plan(o);
    std::map<std::string, std::string> files;
    for (const auto* op : ops_of(plan, Kind::write_file)) {
        const auto slash = op->target.rfind("/etc/");
        ASSERT_NE(slash, std::string::npos) << op->target;
        files[op->target.substr(slash + 5)] = op->data;
    }
    EXPECT_EQ(files.size(), 5u);
    EXPECT_EQ(files.at("passwd"), "actor:x:0:0:Sandflow sandbox:/tmp:/usr/sbin/nologin\n");
    EXPECT_EQ(files.at("group"), "actor:x:0:\n");
    EXPECT_EQ(files.at("hostname"), "box\n");
    EXPECT_NE(files.at("hosts").find("localhost box"), std::string::npos);
    EXPECT_TRUE(files.contains("nsswitch.conf"));
}

TEST(MountPlan, TmpIsTheOnlyWritablePlaceCappedAndHoldsTheWorkingDirectory) {
    ns::MountOptions o;
    o.tmpfs_bytes = 3 << 20;
    o.tmpfs_inodes = 123;
    o.workdir = "/tmp/a/b";
    const auto plan = mount_plan(o);
    const std::string stage = plan.ops[1].target;
    const auto tmpfs = ops_of(plan, Kind::tmpfs);
    ASSERT_EQ(tmpfs.size(), 3u);  // the root, /dev, /tmp
    const auto* tmp = tmpfs.back();
    EXPECT_EQ(tmp->target, stage + "/tmp");
    EXPECT_EQ(tmp->data, "size=3145728,nr_inodes=123,mode=1777");
    EXPECT_EQ(tmp->flags, static_cast<unsigned long>(MS_NOSUID | MS_NODEV | MS_NOEXEC));
    // The other tmpfs are made read-only: /dev by its own step, the root after the pivot.
    const auto restricted = ops_of(plan, Kind::restrict);
    EXPECT_TRUE(std::any_of(restricted.begin(), restricted.end(), [&](const auto* r) {
        return r->target == tmpfs[1]->target && (r->attr_set & MOUNT_ATTR_RDONLY);
    }));
    // The working directory's folders, made after /tmp is mounted.
    std::vector<std::string> made;
    bool after_tmp = false;
    for (const auto& op : plan.ops) {
        after_tmp |= &op == tmp;
        if (after_tmp && op.kind == Kind::mkdir) made.push_back(op.target);
    }
    EXPECT_EQ(made, (std::vector<std::string>{stage + "/tmp/a", stage + "/tmp/a/b"}));
}

TEST(MountPlan, ProcShowsOnlyProcessFoldersWhereTheKernelCan) {
    ns::MountOptions o;
    EXPECT_EQ(ops_of(mount_plan(o), Kind::proc).at(0)->data, "subset=pid");
    o.proc_subset_pid = false;
    const auto plan = mount_plan(o);
    const auto* proc = ops_of(plan, Kind::proc).at(0);
    EXPECT_EQ(proc->data, "");
    EXPECT_EQ(proc->flags, static_cast<unsigned long>(MS_NOSUID | MS_NODEV | MS_NOEXEC));
}

TEST(MountPlan, AWorkingDirectoryOutsideTmpOrNotPlainIsRefused) {
    for (const char* bad : {"/home/x", "/tmpx", "/", "/tmp/../etc", "/tmp/./a", "tmp"}) {
        ns::MountOptions o;
        o.workdir = bad;
        auto plan = ns::make_mount_plan(o);
        ASSERT_FALSE(plan) << bad;
        EXPECT_EQ(plan.error().code, Errc::invalid_argument);
        EXPECT_NE(plan.error().message.find(bad), std::string::npos) << plan.error().message;
    }
}

TEST(MountPlan, AFailedStepNamesItsOperation) {
    const auto plan = mount_plan();
    for (std::size_t i = 0; i < plan.ops.size(); ++i)
        EXPECT_EQ(ns::describe_mount_step(plan, mech::kStepMountFirst + static_cast<int>(i)),
                  plan.ops[i].what);
    EXPECT_EQ(ns::describe_mount_step(plan, mech::kStepMountFirst - 1), "");
    EXPECT_EQ(
        ns::describe_mount_step(plan, mech::kStepMountFirst + static_cast<int>(plan.ops.size())),
        "");
}

// ---- Landlock rules -------------------------------------------------------------------------

using mech::LandlockAccess;

std::map<std::string, LandlockAccess> by_path(const std::vector<mech::LandlockRule>& rules) {
    std::map<std::string, LandlockAccess> m;
    for (const auto& r : rules) EXPECT_TRUE(m.emplace(r.path, r.access).second) << r.path;
    return m;
}

TEST(LandlockRules, PackageSetsAreReadableAndNothingMore) {
    const std::string work = "/tmp/sandflow-work-0/w1";
    const auto rules = by_path(landlock_rules(work, {{"/opt/venv/site", "python/venv"}}));
    EXPECT_EQ(rules.at("/opt/venv/site"), LandlockAccess::read);
    EXPECT_FALSE(rules.contains("/opt/venv"));
    EXPECT_FALSE(rules.contains("/opt"));
}

TEST(LandlockRules, TheLandlockTierWritesOnlyItsOwnFolderAndReachesNoHostState) {
    const std::string work = "/tmp/sandflow-work-0/w1";
    const auto rules = by_path(landlock_rules(work));
    EXPECT_EQ(rules.at(work), LandlockAccess::read_write);
    EXPECT_EQ(rules.at("/usr"), LandlockAccess::read_exec);
    for (const char* dev : {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"})
        EXPECT_EQ(rules.at(dev), LandlockAccess::device) << dev;
    for (const auto& [path, access] : rules) {
        EXPECT_TRUE(path == work || access != LandlockAccess::read_write) << path;
        EXPECT_TRUE(path.starts_with("/dev/") || access != LandlockAccess::device) << path;
        // Of /etc only single files the loader and OpenSSL read.
        EXPECT_TRUE(!path.starts_with("/etc") || access == LandlockAccess::read_file) << path;
    }
    // Nothing that holds other users' or the host's state, nor the shared /tmp itself.
    for (const char* host : {"/", "/etc", "/home", "/root", "/proc", "/tmp", "/var", "/run", "/sys",
                             "/dev", "/tmp/sandflow-work-0"})
        EXPECT_FALSE(rules.contains(host)) << host;
}

TEST(LandlockRules, TheNamespaceTierWritesOnlyItsTmpAndListsTheRoot) {
    const auto rules = by_path(namespace_landlock_rules());
    EXPECT_EQ(rules.at("/"), LandlockAccess::list);
    EXPECT_EQ(rules.at("/usr"), LandlockAccess::read_exec);
    EXPECT_EQ(rules.at("/tmp"), LandlockAccess::read_write);
    for (const auto& [path, access] : rules)
        EXPECT_TRUE(path == "/tmp" || access != LandlockAccess::read_write) << path;
}

TEST(LandlockPlan, RightsFitTheKernelAndEachPathsKind) {
    if (mech::landlock_abi() <= 0) GTEST_SKIP() << "the kernel has no Landlock";
    const auto plan =
        mech::make_landlock_plan({{"/usr", LandlockAccess::read_exec},
                                  {"/tmp", LandlockAccess::read_write},
                                  {"/etc/passwd", LandlockAccess::read},
                                  {"/dev/null", LandlockAccess::device},
                                  {"/nonexistent/sandflow", LandlockAccess::read_write}},
                                 true);
    EXPECT_EQ(plan.abi, mech::landlock_abi());
    // Every right the kernel knows is handled, so what no rule grants is refused.
    EXPECT_TRUE(plan.handled_fs & LANDLOCK_ACCESS_FS_EXECUTE);
    EXPECT_TRUE(plan.handled_fs & LANDLOCK_ACCESS_FS_MAKE_SYM);
    EXPECT_TRUE(plan.abi < 4 || plan.handled_net != 0);  // TCP, with no rule: refused
    std::map<std::string, std::uint64_t> access;
    for (const auto& r : plan.rules) {
        EXPECT_EQ(r.access & ~plan.handled_fs, 0u) << r.path;
        access[r.path] = r.access;
    }
    EXPECT_FALSE(access.contains("/nonexistent/sandflow"));  // nothing to grant
    EXPECT_TRUE(access.at("/usr") & LANDLOCK_ACCESS_FS_EXECUTE);
    EXPECT_FALSE(access.at("/tmp") & LANDLOCK_ACCESS_FS_EXECUTE);
    EXPECT_TRUE(access.at("/tmp") & LANDLOCK_ACCESS_FS_WRITE_FILE);
    // A file gets file rights only (the kernel refuses a folder's on it).
    EXPECT_EQ(access.at("/etc/passwd"), static_cast<std::uint64_t>(LANDLOCK_ACCESS_FS_READ_FILE));
    EXPECT_FALSE(access.at("/dev/null") & LANDLOCK_ACCESS_FS_READ_DIR);
    EXPECT_TRUE(plan.own_proc);
    EXPECT_FALSE(plan.own_proc_access & LANDLOCK_ACCESS_FS_WRITE_FILE);
}

// ---- seccomp policy -------------------------------------------------------------------------

// Runs a classic-BPF seccomp program on `data` as the kernel would; fails the test on an
// instruction it does not know.
std::uint32_t run_bpf(std::span<const sock_filter> prog, const seccomp_data& data) {
    std::uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = {};
    auto word = [&](std::uint32_t off) {
        std::uint32_t w = 0;
        EXPECT_LE(off + 4, sizeof data);
        std::memcpy(&w, reinterpret_cast<const char*>(&data) + off, 4);
        return w;
    };
    for (std::size_t pc = 0; pc < prog.size(); ++pc) {
        const sock_filter& i = prog[pc];
        const std::uint32_t src = BPF_SRC(i.code) == BPF_X ? x : i.k;
        switch (BPF_CLASS(i.code)) {
            case BPF_LD:
                a = BPF_MODE(i.code) == BPF_ABS   ? word(i.k)
                    : BPF_MODE(i.code) == BPF_MEM ? mem[i.k]
                                                  : i.k;
                break;
            case BPF_LDX:
                x = BPF_MODE(i.code) == BPF_MEM ? mem[i.k] : i.k;
                break;
            case BPF_ST:
                mem[i.k] = a;
                break;
            case BPF_STX:
                mem[i.k] = x;
                break;
            case BPF_ALU:
                switch (BPF_OP(i.code)) {
                    case BPF_AND:
                        a &= src;
                        break;
                    case BPF_OR:
                        a |= src;
                        break;
                    case BPF_ADD:
                        a += src;
                        break;
                    case BPF_SUB:
                        a -= src;
                        break;
                    case BPF_RSH:
                        a >>= src;
                        break;
                    case BPF_LSH:
                        a <<= src;
                        break;
                    default:
                        ADD_FAILURE() << "ALU op " << i.code;
                        return 0;
                }
                break;
            case BPF_JMP: {
                bool take = false;
                switch (BPF_OP(i.code)) {
                    case BPF_JA:
                        pc += i.k;
                        continue;
                    case BPF_JEQ:
                        take = a == src;
                        break;
                    case BPF_JGT:
                        take = a > src;
                        break;
                    case BPF_JGE:
                        take = a >= src;
                        break;
                    case BPF_JSET:
                        take = (a & src) != 0;
                        break;
                    default:
                        ADD_FAILURE() << "JMP op " << i.code;
                        return 0;
                }
                pc += take ? i.jt : i.jf;
                break;
            }
            case BPF_RET:
                return BPF_RVAL(i.code) == BPF_A ? a : i.k;
            case BPF_MISC:
                if (BPF_MISCOP(i.code) == BPF_TAX)
                    x = a;
                else
                    a = x;
                break;
            default:
                ADD_FAILURE() << "instruction " << i.code;
                return 0;
        }
    }
    ADD_FAILURE() << "the program fell off its end";
    return 0;
}

#if defined(__x86_64__)
constexpr std::uint32_t kArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr std::uint32_t kArch = AUDIT_ARCH_AARCH64;
#endif

// What a call with these arguments gets from every program the child installs: the
// strictest action wins, as in the kernel (the lowest action value, read as signed).
struct Verdict {
    std::uint32_t action;
    std::uint32_t errno_value;
};
Verdict judge(const mech::SeccompProgram& p, const char* name, std::vector<std::uint64_t> args,
              std::uint32_t arch = kArch, pid_t protect_a = 0, pid_t protect_b = 0) {
    seccomp_data d{};
    d.nr = seccomp_syscall_resolve_name(name);
    EXPECT_NE(d.nr, __NR_SCMP_ERROR) << name;
    d.arch = arch;
    for (std::size_t i = 0; i < args.size() && i < 6; ++i) d.args[i] = args[i];
    std::vector<std::uint32_t> rets = {run_bpf(p.main, d), run_bpf(p.personality, d)};
    if (p.signal_guard) rets.push_back(run_bpf(mech::signal_guard_for(p, protect_a, protect_b), d));
    std::uint32_t ret = SECCOMP_RET_ALLOW;
    for (const auto r : rets)
        if (static_cast<std::int32_t>(r & SECCOMP_RET_ACTION_FULL) <
            static_cast<std::int32_t>(ret & SECCOMP_RET_ACTION_FULL))
            ret = r;
    return {ret & SECCOMP_RET_ACTION_FULL, ret & SECCOMP_RET_DATA};
}

bool allowed(const Verdict& v) {
    return v.action == SECCOMP_RET_ALLOW;
}
bool refused(const Verdict& v, std::uint32_t err = EPERM) {
    return v.action == SECCOMP_RET_ERRNO && v.errno_value == err;
}

mech::SeccompProgram program(mech::SeccompTier tier) {
    auto p = mech::build_seccomp_program(tier);
    EXPECT_TRUE(p) << p.error().message;
    return p ? std::move(*p) : mech::SeccompProgram{};
}

constexpr mech::SeccompTier kTiers[] = {mech::SeccompTier::namespaces,
                                        mech::SeccompTier::no_namespaces};

TEST(SeccompPolicy, EveryRuleResolvesAndHasAReason) {
    for (const auto tier : kTiers)
        for (const auto& r : mech::seccomp_rules(tier)) {
            EXPECT_GT(std::strlen(r.reason), 10u) << r.syscall;
            EXPECT_TRUE(r.errno_value == EPERM || r.errno_value == ENOSYS) << r.syscall;
            EXPECT_LT(r.arg, 6) << r.syscall;
            EXPECT_NE(seccomp_syscall_resolve_name(r.syscall), __NR_SCMP_ERROR) << r.syscall;
        }
}

// Each rule, compiled, refuses the call it names with its errno, on each tier.
TEST(SeccompPolicy, TheCompiledProgramRefusesEveryRuleWithItsErrno) {
    for (const auto tier : kTiers) {
        const auto p = program(tier);
        EXPECT_EQ(p.signal_guard, tier == mech::SeccompTier::no_namespaces);
        for (const auto& r : mech::seccomp_rules(tier)) {
            std::vector<std::uint64_t> args(6, 0);
            // The argument that meets the rule's condition.
            if (r.arg >= 0)
                args[static_cast<std::size_t>(r.arg)] = r.not_equal ? r.value + 1 : r.value;
            EXPECT_TRUE(
                refused(judge(p, r.syscall, args), static_cast<std::uint32_t>(r.errno_value)))
                << r.syscall << " (" << r.reason << ")";
        }
    }
}

TEST(SeccompPolicy, OrdinaryCallsAndArgumentsPassOnTheNamespaceTier) {
    const auto p = program(mech::SeccompTier::namespaces);
    for (const char* call : {"read", "write", "openat", "mmap", "futex", "execve", "getpid"})
        EXPECT_TRUE(allowed(judge(p, call, {}))) << call;
    EXPECT_TRUE(allowed(judge(p, "socket", {AF_INET, SOCK_STREAM})));
    EXPECT_TRUE(allowed(judge(p, "socket", {AF_UNIX, SOCK_STREAM})));
    EXPECT_TRUE(refused(judge(p, "socket", {AF_INET, SOCK_RAW})));
    EXPECT_TRUE(refused(judge(p, "socket", {AF_NETLINK, SOCK_DGRAM})));
    EXPECT_TRUE(allowed(judge(p, "clone", {SIGCHLD})));
    EXPECT_TRUE(allowed(judge(p, "clone", {CLONE_VM | CLONE_THREAD | CLONE_SIGHAND})));
    EXPECT_TRUE(refused(judge(p, "clone", {CLONE_NEWUSER | SIGCHLD})));
    EXPECT_TRUE(refused(judge(p, "clone3", {}), ENOSYS));
    EXPECT_TRUE(allowed(judge(p, "mknod", {0, S_IFIFO | 0600})));
    EXPECT_TRUE(refused(judge(p, "mknod", {0, S_IFCHR | 0600})));
    EXPECT_TRUE(allowed(judge(p, "ioctl", {0, FIONREAD})));
    EXPECT_TRUE(refused(judge(p, "ioctl", {0, TIOCSTI})));
    // Signals: any process but the init (pid 1); the pid is an int, its high half ignored.
    EXPECT_TRUE(allowed(judge(p, "kill", {1234, SIGTERM})));
    EXPECT_TRUE(allowed(judge(p, "kill", {static_cast<std::uint32_t>(-1), SIGTERM})));
    EXPECT_TRUE(refused(judge(p, "kill", {1, SIGKILL})));
    EXPECT_TRUE(refused(judge(p, "kill", {0x1'0000'0001ull, SIGKILL})));
}

TEST(SeccompPolicy, WithoutNamespacesOnlyUnixPairsAndSignalsToSingleProcessesRemain) {
    const auto p = program(mech::SeccompTier::no_namespaces);
    for (const int family : {AF_INET, AF_INET6, AF_UNIX, AF_NETLINK})
        EXPECT_TRUE(refused(judge(p, "socket", {static_cast<std::uint64_t>(family), SOCK_STREAM})))
            << family;
    EXPECT_TRUE(allowed(judge(p, "socketpair", {AF_UNIX, SOCK_STREAM})));
    EXPECT_TRUE(refused(judge(p, "socketpair", {AF_INET, SOCK_STREAM})));
    EXPECT_TRUE(allowed(judge(p, "kill", {1234, SIGTERM})));
    EXPECT_TRUE(refused(judge(p, "kill", {static_cast<std::uint32_t>(-1), SIGTERM})));
    EXPECT_TRUE(refused(judge(p, "kill", {static_cast<std::uint32_t>(-1234), SIGTERM})));
    // The signal guard: the supervisor and the runtime, whoever they are, by every route.
    const pid_t supervisor = 4242, runtime = 777;
    for (const char* call :
         {"kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open"}) {
        for (const pid_t pid : {supervisor, runtime})
            EXPECT_TRUE(refused(judge(p, call, {static_cast<std::uint64_t>(pid), SIGKILL}, kArch,
                                      supervisor, runtime)))
                << call << " " << pid;
        EXPECT_TRUE(allowed(judge(p, call, {5555, SIGKILL}, kArch, supervisor, runtime))) << call;
    }
    // Without pids to protect the guard refuses no one.
    EXPECT_TRUE(allowed(judge(p, "kill", {4242, SIGTERM})));
}

TEST(SeccompPolicy, PersonalityOnlyQueriesOrSetsTheDefaultAndForeignCallsKill) {
    for (const auto tier : kTiers) {
        const auto p = program(tier);
        EXPECT_TRUE(allowed(judge(p, "personality", {PER_LINUX})));
        EXPECT_TRUE(allowed(judge(p, "personality", {0xffffffffu})));
        EXPECT_TRUE(refused(judge(p, "personality", {ADDR_NO_RANDOMIZE})));
        EXPECT_TRUE(refused(judge(p, "personality", {READ_IMPLIES_EXEC})));
        EXPECT_TRUE(refused(judge(p, "personality", {0x1'0000'0000ull})));
        // i386 through int 0x80 and x32 reach other system call tables: the process dies.
        EXPECT_EQ(judge(p, "read", {}, AUDIT_ARCH_I386).action, SECCOMP_RET_KILL_PROCESS);
    }
}

// ---- gVisor bundle --------------------------------------------------------------------------

// The bundle's config.json carries the limits, the read-only root and mounts.
TEST(GvisorBundle, TheConfigMapsLimitsMountsAndTheUser) {
    gvisor::BundleSpec spec;
    spec.argv = {"/usr/bin/python3", "-c", "pass"};
    spec.env = clean_worker_env();
    spec.root = "/run/x/root";
    spec.limits.open_files = 77;
    spec.limits.pids = 9;
    spec.limits.nproc = 50;
    spec.limits.tmpfs_bytes = 5 << 20;
    spec.limits.cpu_seconds = 11;
    spec.init_tasks = 1;
    gvisor::RootLayout layout;
    layout.links = {{"bin", "usr/bin"}};
    layout.bound_dirs = {"lib64"};
    layout.ld_so_cache = true;
    auto parsed = parse_json(gvisor::oci_config(spec, layout), "config.json");
    ASSERT_TRUE(parsed) << parsed.error().message;
    const auto& c = parsed->as_object();
    const auto& proc = c.at("process").as_object();
    EXPECT_EQ(proc.at("args"), (json::array{"/usr/bin/python3", "-c", "pass"}));
    EXPECT_EQ(proc.at("cwd"), "/tmp");
    EXPECT_EQ(proc.at("user"), (json::object{{"uid", 65534}, {"gid", 65534}}));
    EXPECT_EQ(proc.at("noNewPrivileges"), true);
    for (const auto& [set, caps] : proc.at("capabilities").as_object())
        EXPECT_TRUE(caps.as_array().empty()) << set;
    json::object rl;
    for (const auto& r : proc.at("rlimits").as_array()) {
        const auto& o = r.as_object();
        EXPECT_EQ(o.at("soft").to_number<std::uint64_t>() + (o.at("type") == "RLIMIT_CPU"),
                  o.at("hard").to_number<std::uint64_t>());
        rl[o.at("type").as_string()] = o.at("soft");
    }
    EXPECT_EQ(rl.at("RLIMIT_NOFILE"), 77);
    // min(nproc, pids) and the init: gVisor counts every task of the user, the init's too.
    EXPECT_EQ(rl.at("RLIMIT_NPROC"), 10);
    EXPECT_EQ(rl.at("RLIMIT_FSIZE"), 5 << 20);
    EXPECT_EQ(rl.at("RLIMIT_CPU"), 11);
    EXPECT_EQ(rl.at("RLIMIT_CORE"), 0);
    EXPECT_EQ(c.at("root"), (json::object{{"path", "/run/x/root"}, {"readonly", true}}));
    EXPECT_EQ(c.at("hostname"), "sandflow");
    json::object mounts;
    for (const auto& m : c.at("mounts").as_array())
        mounts[m.as_object().at("destination").as_string()] = m;
    EXPECT_EQ(mounts.size(), 7u) << json::serialize(c.at("mounts"));
    for (const char* ro : {"/usr", "/lib64", "/etc/ld.so.cache"}) {
        const auto& m = mounts.at(ro).as_object();
        EXPECT_EQ(m.at("type"), "bind") << ro;
        EXPECT_EQ(m.at("source"), ro);
        EXPECT_NE(std::find(m.at("options").as_array().begin(), m.at("options").as_array().end(),
                            json::value("ro")),
                  m.at("options").as_array().end())
            << ro;
    }
    EXPECT_EQ(mounts.at("/tmp").as_object().at("options"),
              (json::array{"noexec", "size=5242880", "mode=1777"}));
    EXPECT_EQ(mounts.at("/proc").as_object().at("type"), "proc");
    // gVisor's own /sys and /proc/sys: hidden under an empty tmpfs no one may enter.
    for (const char* hidden : {"/sys", "/proc/sys"}) {
        const auto& m = mounts.at(hidden).as_object();
        EXPECT_EQ(m.at("type"), "tmpfs") << hidden;
        EXPECT_EQ(m.at("options"), (json::array{"ro", "size=4096", "mode=000"})) << hidden;
    }
    // The seccomp policy, applied inside gVisor: its EPERM rules, conditions included.
    const auto& seccomp = c.at("linux").as_object().at("seccomp").as_object();
    EXPECT_EQ(seccomp.at("defaultAction"), "SCMP_ACT_ALLOW");
    std::size_t eperm_rules = 0;
    for (const auto& r : mech::seccomp_rules(mech::SeccompTier::namespaces))
        eperm_rules += r.errno_value == EPERM;
    const auto& rules = seccomp.at("syscalls").as_array();
    EXPECT_EQ(rules.size(), eperm_rules);
    auto rule_for = [&](const char* name) -> const json::object* {
        for (const auto& r : rules)
            if (r.as_object().at("names").as_array().front() == name) return &r.as_object();
        return nullptr;
    };
    ASSERT_NE(rule_for("unshare"), nullptr);
    EXPECT_EQ(rule_for("unshare")->at("action"), "SCMP_ACT_ERRNO");
    EXPECT_EQ(rule_for("clone3"), nullptr);  // ENOSYS: gVisor's kernel has no clone3
    const auto* mknod = rule_for("mknod");
    ASSERT_NE(mknod, nullptr);
    EXPECT_EQ(mknod->at("args"), (json::array{json::object{{"index", 1},
                                                           {"op", "SCMP_CMP_MASKED_EQ"},
                                                           {"value", S_IFMT},
                                                           {"valueTwo", S_IFCHR}}}));
}

// What create() says when gVisor is missing or misconfigured (it starts nothing).
TEST(GvisorBackend, ErrorsSayHowToFixThem) {
    GvisorOptions o;
    o.runsc = "/nonexistent/runsc";
    auto missing = GvisorBackend::create(o);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, Errc::sandbox_unavailable);
    EXPECT_NE(missing.error().message.find("apt-get install runsc"), std::string::npos)
        << missing.error().message;
    o = {};
    o.platform = "vmware";
    auto platform = GvisorBackend::create(o);
    ASSERT_FALSE(platform);
    EXPECT_EQ(platform.error().code, Errc::invalid_argument);
    EXPECT_NE(platform.error().message.find("ptrace, systrap, kvm"), std::string::npos);
    o = {};
    o.limits.tmpfs_bytes = 0;
    auto zero = GvisorBackend::create(o);
    ASSERT_FALSE(zero);
    EXPECT_EQ(zero.error().code, Errc::invalid_argument);
    auto names = backend_names();
    EXPECT_NE(std::find(names.begin(), names.end(), "gvisor"), names.end());
}

}  // namespace
