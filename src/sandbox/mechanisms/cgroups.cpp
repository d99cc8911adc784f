#include "sandbox/mechanisms/cgroups.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/log.hpp"
#include "sandbox/mechanisms/control_file.hpp"
#include "sandbox/mechanisms/periodic_scan.hpp"

namespace sandflow::sandbox::mech {

namespace {

constexpr const char* kWanted[] = {"memory", "pids", "cpu"};
constexpr std::uint64_t kCpuPeriodUs = 100'000;

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::string cur;
    std::istringstream in(s);
    while (std::getline(in, cur, sep)) out.push_back(cur);
    return out;
}

bool has(const std::vector<std::string>& v, const std::string& x) {
    for (const auto& e : v)
        if (e == x) return true;
    return false;
}

// "key value" lines (memory.oom_control, pids.events); 0 when absent.
std::uint64_t read_key(const std::string& path, const std::string& key) {
    std::ifstream in(path);
    std::string k;
    std::uint64_t v = 0;
    while (in >> k >> v)
        if (k == key) return v;
    return 0;
}

// The same from a descriptor kept open (pread from 0: kernfs renders the file anew), with
// no allocation.
std::uint64_t read_key(int fd, std::string_view key) {
    char buf[512];
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return 0;
    buf[n] = '\0';
    for (const char* line = buf; *line;) {
        const char* end = std::strchr(line, '\n');
        if (!end) end = line + std::strlen(line);
        const std::string_view l(line, static_cast<std::size_t>(end - line));
        if (l.size() > key.size() && l.starts_with(key) && l[key.size()] == ' ')
            return std::strtoull(line + key.size() + 1, nullptr, 10);
        line = *end ? end + 1 : end;
    }
    return 0;
}

}  // namespace

// Owned by the SandboxCgroup; the scanner's list holds a second reference until remove().
// The scanner looks for refused forks (see cgroups.hpp) in sandboxes that have a pids group.
struct SandboxCgroup::Events final : ScanEntry {
    UniqueFd notify;       // the eventfd handed out by event_fd()
    UniqueFd pids_events;  // pids.events, or closed without a pids group
    UniqueFd oom_control;  // memory.oom_control, or closed without a memory group
    std::atomic<bool> pids_signalled{false};  // the scanner's work is done
    bool oom_seen = false;                    // crossed() reported an OOM kill

    // A read of a few microseconds.
    bool scan() override {
        if (read_key(pids_events.get(), "max") == 0) return false;
        pids_signalled = true;
        const std::uint64_t one = 1;
        (void)!::write(notify.get(), &one, sizeof one);
        return true;
    }
};

namespace {

PeriodicScanner& pids_scanner() {
    static std::atomic<PeriodicScanner*> slot{nullptr};
    return PeriodicScanner::of_this_process(slot, kPidsScanInterval);
}

}  // namespace

std::string CgroupSupport::summary() const {
    std::string used, why;
    for (const auto& c : controllers) {
        if (c.usable())
            used += (used.empty() ? "" : ", ") + c.name;
        else
            why += (why.empty() ? "" : "; ") + c.name + ": " + c.why;
    }
    if (used.empty()) return "none (rlimits only): " + why;
    return used + " (cgroup v1)" + (why.empty() ? "" : "; not " + why);
}

std::string new_group_id() {
    static const std::string prefix = [] {
        std::uint32_t token = 0;
        if (::getrandom(&token, sizeof token, 0) != static_cast<ssize_t>(sizeof token))
            token = static_cast<std::uint32_t>(
                std::chrono::steady_clock::now().time_since_epoch().count());
        char hex[9];
        std::snprintf(hex, sizeof hex, "%08x", token);
        return std::to_string(::getpid()) + "-" + hex + "-";
    }();
    static std::atomic<std::uint64_t> counter{0};
    return prefix + std::to_string(++counter);
}

std::size_t remove_stale_groups(const CgroupSupport& support) {
    std::size_t removed = 0;
    for (const auto& c : support.controllers) {
        if (!c.usable()) continue;
        std::error_code ec;
        for (const auto& entry : std::filesystem::directory_iterator(c.base, ec)) {
            const std::string name = entry.path().filename().string();
            const auto dash = name.find('-');
            if (dash == std::string::npos || dash == 0) continue;
            const long pid = std::strtol(name.substr(0, dash).c_str(), nullptr, 10);
            if (pid <= 0 || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
            if (::rmdir(entry.path().c_str()) == 0) ++removed;
        }
        ::rmdir(c.base.c_str());  // the shared parent, when nothing else is left in it
    }
    return removed;
}

CgroupSupport backend_cgroups() {
    CgroupSupport s = detect_cgroup_support();
    if (const auto n = remove_stale_groups(s))
        spdlog::info("removed {} cgroup(s) left behind by runtimes that are gone", n);
    return s;
}

CgroupSupport detect_cgroup_support() {
    CgroupSupport s;
    // controller -> v1 mount point
    std::vector<std::pair<std::string, std::string>> mounts;
    {
        std::ifstream in("/proc/self/mountinfo");
        std::string line;
        while (std::getline(in, line)) {
            // ... mount-point ... - fstype source super-options
            const auto dash = line.find(" - ");
            if (dash == std::string::npos) continue;
            const auto pre = split(line.substr(0, dash), ' ');
            const auto post = split(line.substr(dash + 3), ' ');
            if (pre.size() < 5 || post.size() < 3) continue;
            if (post[0] == "cgroup2") s.v2_mounted = true;
            if (post[0] != "cgroup") continue;
            for (const auto& opt : split(post[2], ','))
                if (has(std::vector<std::string>(std::begin(kWanted), std::end(kWanted)), opt))
                    mounts.emplace_back(opt, pre[4]);
        }
    }
    // controller -> the runtime's own group
    std::vector<std::pair<std::string, std::string>> own;
    {
        std::ifstream in("/proc/self/cgroup");
        std::string line;
        while (std::getline(in, line)) {
            const auto a = line.find(':');
            const auto b = line.find(':', a + 1);
            if (a == std::string::npos || b == std::string::npos) continue;
            for (const auto& c : split(line.substr(a + 1, b - a - 1), ','))
                own.emplace_back(c, line.substr(b + 1));
        }
    }
    for (const char* name : kWanted) {
        CgroupSupport::Controller c;
        c.name = name;
        std::string mount, group;
        for (const auto& [k, v] : mounts)
            if (k == name) mount = v;
        for (const auto& [k, v] : own)
            if (k == name) group = v;
        if (mount.empty()) {
            c.why = "no cgroup v1 hierarchy with this controller is mounted";
        } else {
            if (group == "/") group.clear();
            const std::string parent = mount + group;
            // Nothing is created until a sandbox starts (and the folder goes when the last
            // one ends): a runtime that only probes leaves no trace in the hierarchy.
            if (::access(parent.c_str(), W_OK) != 0) {
                c.why = "cannot create groups in " + parent + ": " + std::strerror(errno) +
                        " (run the runtime as root, or delegate a writable cgroup to its user)";
            } else {
                c.base = parent + "/sandflow";
            }
        }
        s.controllers.push_back(std::move(c));
    }
    return s;
}

SandboxCgroup& SandboxCgroup::operator=(SandboxCgroup&& o) noexcept {
    if (this != &o) {
        remove();
        dirs_ = std::move(o.dirs_);
        limits_ = o.limits_;
        memsw_ = o.memsw_;
        events_ = std::move(o.events_);
        o.dirs_.clear();
    }
    return *this;
}

Result<SandboxCgroup> SandboxCgroup::create(const CgroupSupport& support, const std::string& id,
                                            const SandboxLimits& limits) {
    SandboxCgroup g;
    g.limits_ = limits;
    for (const auto& c : support.controllers) {
        if (!c.usable()) continue;
        const std::string dir = c.base + "/" + id;
        // The parent may vanish between the two mkdirs, removed with another sandbox's
        // group (SandboxCgroup::remove): then both are made again.
        int made = -1;
        for (int attempt = 0; attempt < 5 && made != 0; ++attempt) {
            if (::mkdir(c.base.c_str(), 0755) != 0 && errno != EEXIST) break;
            made = ::mkdir(dir.c_str(), 0755);
            if (made != 0 && errno != ENOENT) break;
        }
        if (made != 0) return tl::unexpected(system_error("create cgroup " + dir, errno));
        g.dirs_.push_back({c.name, dir});
        Result<void> r;
        if (c.name == "memory") {
            r = write_control_file(dir + "/memory.limit_in_bytes",
                                   std::to_string(limits.memory_bytes));
            // With swap accounting, memory+swap gets the same cap: no escape into swap.
            g.memsw_ = ::access((dir + "/memory.memsw.limit_in_bytes").c_str(), F_OK) == 0;
            if (r && g.memsw_)
                r = write_control_file(dir + "/memory.memsw.limit_in_bytes",
                                       std::to_string(limits.memory_bytes));
        } else if (c.name == "pids") {
            r = write_control_file(dir + "/pids.max", std::to_string(limits.pids));
        } else if (c.name == "cpu") {
            r = write_control_file(dir + "/cpu.cfs_period_us", std::to_string(kCpuPeriodUs));
            if (r)
                r = write_control_file(dir + "/cpu.cfs_quota_us",
                                       std::to_string(kCpuPeriodUs * limits.cpu_milli / 1000));
        }
        if (!r) return tl::unexpected(r.error());
    }
    return g;
}

void SandboxCgroup::watch() {
    if (events_) return;
    const Dir* memory = dir("memory");
    const Dir* pids = dir("pids");
    if (!memory && !pids) return;
    auto e = std::make_shared<Events>();
    e->notify.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!e->notify) return;  // no events; the limits themselves still hold
    if (memory) {
        e->oom_control.reset(
            ::open((memory->path + "/memory.oom_control").c_str(), O_RDONLY | O_CLOEXEC));
        // "<eventfd> <memory.oom_control fd>": the kernel signals the eventfd each time the
        // group runs out of memory. Without it (a kernel built without v1 events) OOM kills
        // are still counted for crossed() and verdict(), only not announced.
        if (e->oom_control)
            (void)write_control_file(
                memory->path + "/cgroup.event_control",
                std::to_string(e->notify.get()) + " " + std::to_string(e->oom_control.get()));
    }
    if (pids) {
        e->pids_events.reset(::open((pids->path + "/pids.events").c_str(), O_RDONLY | O_CLOEXEC));
        if (e->pids_events) pids_scanner().add(e);
    }
    events_ = std::move(e);
}

const SandboxCgroup::Dir* SandboxCgroup::dir(std::string_view controller) const {
    for (const auto& d : dirs_)
        if (d.controller == controller) return &d;
    return nullptr;
}

bool SandboxCgroup::has(std::string_view controller) const {
    return dir(controller) != nullptr;
}

int SandboxCgroup::event_fd() const {
    return events_ ? events_->notify.get() : -1;
}

Result<bool> SandboxCgroup::update(const SandboxLimits& to) {
    const SandboxLimits from = limits_;
    const bool memory = to.memory_bytes != from.memory_bytes;
    const bool pids = to.pids != from.pids;
    const bool cpu = to.cpu_milli != from.cpu_milli;
    if ((memory && !has("memory")) || (pids && !has("pids")) || (cpu && !has("cpu"))) return false;

    // v1 keeps memory <= memory+swap at every step: raising, memsw goes first; lowering,
    // memory goes first.
    auto set_memory = [&](std::uint64_t bytes, std::uint64_t was) -> Result<void> {
        const std::string& d = dir("memory")->path;
        const std::string mem = d + "/memory.limit_in_bytes";
        const std::string memsw = d + "/memory.memsw.limit_in_bytes";
        const std::string v = std::to_string(bytes);
        if (bytes > was) {
            if (memsw_) {
                if (auto r = write_control_file(memsw, v); !r) return r;
            }
            if (auto r = write_control_file(mem, v); !r) {
                if (memsw_) (void)write_control_file(memsw, std::to_string(was));
                return r;
            }
        } else {
            if (auto r = write_control_file(mem, v); !r) return r;
            if (memsw_) {
                if (auto r = write_control_file(memsw, v); !r) {
                    (void)write_control_file(mem, std::to_string(was));
                    return r;
                }
            }
        }
        return {};
    };
    auto set_pids = [&](std::uint32_t n) {
        return write_control_file(dir("pids")->path + "/pids.max", std::to_string(n));
    };
    auto set_cpu = [&](std::uint32_t milli) {
        return write_control_file(dir("cpu")->path + "/cpu.cfs_quota_us",
                                  std::to_string(kCpuPeriodUs * milli / 1000));
    };

    if (memory) {
        if (auto r = set_memory(to.memory_bytes, from.memory_bytes); !r) {
            // EBUSY: the sandbox uses more than the new limit and the kernel could not
            // reclaim it; a new sandbox can start under it.
            const auto* err = r.error().data.if_contains("errno");
            if (err && err->is_int64() && err->as_int64() == EBUSY) return false;
            return tl::unexpected(r.error());
        }
    }
    if (pids) {
        if (auto r = set_pids(to.pids); !r) {
            if (memory) (void)set_memory(from.memory_bytes, to.memory_bytes);
            return tl::unexpected(r.error());
        }
    }
    if (cpu) {
        if (auto r = set_cpu(to.cpu_milli); !r) {
            if (pids) (void)set_pids(from.pids);
            if (memory) (void)set_memory(from.memory_bytes, to.memory_bytes);
            return tl::unexpected(r.error());
        }
    }
    limits_.memory_bytes = to.memory_bytes;
    limits_.pids = to.pids;
    limits_.cpu_milli = to.cpu_milli;
    return true;
}

std::optional<CgroupVerdict> SandboxCgroup::crossed() {
    if (!events_) return std::nullopt;
    Events& e = *events_;
    std::uint64_t signals = 0;
    const bool notified = ::read(e.notify.get(), &signals, sizeof signals) == sizeof signals;
    auto oom_kills = [&] { return e.oom_control ? read_key(e.oom_control.get(), "oom_kill") : 0; };
    if (e.oom_seen || oom_kills() > 0) {
        e.oom_seen = true;
        return CgroupVerdict{"memory", limits_.memory_bytes};
    }
    if (e.pids_events && read_key(e.pids_events.get(), "max") > 0)
        return CgroupVerdict{"pids", limits_.pids};
    // Only the kernel signals without a count behind it: an OOM notification, just before
    // the OOM killer runs.
    if (notified && e.oom_control) {
        const auto until = std::chrono::steady_clock::now() + kOomKillWait;
        while (std::chrono::steady_clock::now() < until) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            if (oom_kills() > 0) {
                e.oom_seen = true;
                return CgroupVerdict{"memory", limits_.memory_bytes};
            }
        }
    }
    return std::nullopt;
}

Result<CgroupEntry> SandboxCgroup::open_entry() const {
    CgroupEntry e;
    for (const auto& d : dirs_) {
        if (e.count == CgroupEntry::kMax)
            return fail(Errc::internal, "more cgroups than a CgroupEntry holds");
        const std::string path = d.path + "/tasks";
        e.fds[e.count].reset(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
        if (!e.fds[e.count]) return tl::unexpected(system_error("open " + path, errno));
        ++e.count;
    }
    return e;
}

ChildFailure enter_cgroups(const CgroupEntry& entry) noexcept {
    for (int i = 0; i < entry.count; ++i)
        if (::write(entry.fds[i].get(), "0", 1) != 1) return failed_at(kStepCgroupEnter);
    return {};
}

Result<void> SandboxCgroup::attach(pid_t pid) const {
    for (const auto& d : dirs_)
        if (auto r = write_control_file(d.path + "/cgroup.procs", std::to_string(pid)); !r)
            return r;
    return {};
}

CgroupVerdict SandboxCgroup::verdict() const {
    for (const auto& d : dirs_) {
        if (d.controller == "memory" && read_key(d.path + "/memory.oom_control", "oom_kill") > 0)
            return {"memory", limits_.memory_bytes};
    }
    for (const auto& d : dirs_) {
        if (d.controller == "pids" && read_key(d.path + "/pids.events", "max") > 0)
            return {"pids", limits_.pids};
    }
    return {};
}

namespace {

bool same_cgroup_limits(const SandboxLimits& a, const SandboxLimits& b) {
    return a.memory_bytes == b.memory_bytes && a.pids == b.pids && a.cpu_milli == b.cpu_milli;
}

bool any_usable(const CgroupSupport& support) {
    for (const auto& c : support.controllers)
        if (c.usable()) return true;
    return false;
}

}  // namespace

Result<SandboxCgroup> CgroupSpare::take(const CgroupSupport& support, const SandboxLimits& limits) {
    {
        std::lock_guard lock(m_);
        ++taken_;
        if (spare_ && same_cgroup_limits(spare_->limits(), limits)) {
            SandboxCgroup g = std::move(*spare_);
            spare_.reset();
            return g;
        }
    }
    return SandboxCgroup::create(support, new_group_id(), limits);
}

void CgroupSpare::refill(const CgroupSupport& support, const SandboxLimits& limits) {
    if (!any_usable(support)) return;
    {
        std::lock_guard lock(m_);
        if (spare_ || taken_ < 2) return;
    }
    auto made = SandboxCgroup::create(support, new_group_id(), limits);
    if (!made) return;
    std::lock_guard lock(m_);
    if (!spare_) spare_ = std::move(*made);
}

void SandboxCgroup::remove() {
    if (events_) {
        if (events_->pids_events) pids_scanner().remove(events_.get());
        events_.reset();
    }
    for (const auto& d : dirs_) {
        // The kernel frees a group a moment after its last task is reaped (up to ~0.5 s).
        for (int i = 0; i < 250; ++i) {
            if (::rmdir(d.path.c_str()) == 0 || errno == ENOENT) break;
            if (errno != EBUSY) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        // The shared parent goes with the last sandbox; while others live this fails.
        const auto slash = d.path.rfind('/');
        if (slash != std::string::npos) ::rmdir(d.path.substr(0, slash).c_str());
    }
    dirs_.clear();
}

}  // namespace sandflow::sandbox::mech
