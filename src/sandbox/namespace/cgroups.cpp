#include "sandbox/namespace/cgroups.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace sandflow::sandbox::ns {

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

// One write(2): cgroup files take a value per write call.
Result<void> write_file(const std::string& path, const std::string& text) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return tl::unexpected(system_error("open " + path, errno));
    const ssize_t n = ::write(fd, text.data(), text.size());
    const int err = errno;
    ::close(fd);
    if (n != static_cast<ssize_t>(text.size()))
        return tl::unexpected(system_error("write '" + text + "' to " + path, n < 0 ? err : EIO));
    return {};
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
            r = write_file(dir + "/memory.limit_in_bytes", std::to_string(limits.memory_bytes));
            // With swap accounting, memory+swap gets the same cap: no escape into swap.
            if (r && ::access((dir + "/memory.memsw.limit_in_bytes").c_str(), F_OK) == 0)
                r = write_file(dir + "/memory.memsw.limit_in_bytes",
                               std::to_string(limits.memory_bytes));
        } else if (c.name == "pids") {
            r = write_file(dir + "/pids.max", std::to_string(limits.pids));
        } else if (c.name == "cpu") {
            r = write_file(dir + "/cpu.cfs_period_us", std::to_string(kCpuPeriodUs));
            if (r)
                r = write_file(dir + "/cpu.cfs_quota_us",
                               std::to_string(kCpuPeriodUs * limits.cpu_milli / 1000));
        }
        if (!r) return tl::unexpected(r.error());
    }
    return g;
}

Result<void> SandboxCgroup::attach(pid_t pid) const {
    for (const auto& d : dirs_)
        if (auto r = write_file(d.path + "/cgroup.procs", std::to_string(pid)); !r) return r;
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

void SandboxCgroup::remove() {
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

}  // namespace sandflow::sandbox::ns
