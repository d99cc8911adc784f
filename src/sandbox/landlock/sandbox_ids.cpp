#include "sandbox/landlock/sandbox_ids.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>

#include "sandbox/mechanisms/capabilities.hpp"

namespace sandflow::sandbox::landlock {

namespace {

// Whether every id of [first, first + count) is mapped in this user namespace's map file.
bool range_mapped(const char* map_file, uid_t first, std::uint32_t count) {
    std::ifstream in(map_file);
    std::uint64_t inside = 0, outside = 0, length = 0;
    while (in >> inside >> outside >> length)
        if (first >= inside && std::uint64_t{first} + count <= inside + length) return true;
    return false;
}

}  // namespace

SandboxIds::SandboxIds(const IdRange& range) : range_(range) {
    if (range.count == 0) {
        why_ = "the sandbox id range is empty";
    } else if (!mech::holds_capability(CAP_SETUID) || !mech::holds_capability(CAP_SETGID)) {
        why_ = "the runtime may not switch ids (no CAP_SETUID/CAP_SETGID: not root)";
    } else if (!range_mapped("/proc/self/uid_map", range.first, range.count) ||
               !range_mapped("/proc/self/gid_map", range.first, range.count)) {
        why_ = "ids " + std::to_string(range.first) + "-" +
               std::to_string(range.first + range.count - 1) +
               " are not mapped in this user namespace (/proc/self/uid_map)";
    } else {
        per_sandbox_ = true;
    }
    if (per_sandbox_) {
        // Start anywhere in the range: runtimes that share it then rarely try the same ids.
        std::uint32_t r = 0;
        if (::getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
            r = static_cast<std::uint32_t>(::getpid());
        next_ = r % range.count;
    }
}

Result<IdLease> SandboxIds::acquire() {
    std::lock_guard lock(m_);
    for (std::uint32_t attempt = 0; attempt < kIdAttempts && attempt < range_.count; ++attempt) {
        const uid_t id = range_.first + next_;
        next_ = (next_ + 1) % range_.count;
        UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        if (!fd) return tl::unexpected(system_error("a socket to hold a sandbox id", errno));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        const std::string name = "sandflow-sandbox-id-" + std::to_string(id);
        std::memcpy(addr.sun_path + 1, name.data(), name.size());  // sun_path[0] = 0: abstract
        const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
        if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len) == 0)
            return IdLease{id, std::move(fd)};
        if (errno != EADDRINUSE)
            return tl::unexpected(system_error(
                "binding the name that holds sandbox id " + std::to_string(id), errno));
    }
    return fail(Errc::sandbox_unavailable,
                "no free sandbox id: " + std::to_string(kIdAttempts) + " ids of the range " +
                    std::to_string(range_.first) + "+" + std::to_string(range_.count) +
                    " are held by running sandboxes; widen the range or run fewer sandboxes",
                {{"backend", "landlock"}});
}

}  // namespace sandflow::sandbox::landlock
