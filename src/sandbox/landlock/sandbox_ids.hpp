// Who a landlock-tier sandbox runs as.
//
// Where the runtime may switch ids (root, typically inside a container, with CAP_SETUID and
// CAP_SETGID) and the configured range is mapped in its user namespace, every sandbox gets
// a uid and gid of its own from that range: RLIMIT_NPROC then counts one sandbox, the
// sandbox cannot signal or ptrace its neighbours, and another sandbox's files are not its
// own. Elsewhere (an ordinary user) it runs as the runtime's own uid, and Landlock's scoping
// and the seccomp signal guard are what keep it from its neighbours (docs/sandbox.md).
//
// An id is held for the sandbox's whole life by an abstract unix socket bound to a name
// made of it ("@sandflow-sandbox-id-<id>"): the kernel lets one socket at a time hold a
// name and frees it when the socket closes, however the runtime ends, so runtimes that
// share a network namespace and a range never hand out the same id at once, and nothing is
// left on disk. Runtimes in different network namespaces (two containers) do not see each
// other's names: give them ranges that do not overlap. Sandboxes cannot take names: they
// may not create sockets.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "core/error.hpp"
#include "sandbox/process.hpp"

namespace sandflow::sandbox::landlock {

// The default range: far from the ids Debian hands out (system 0-999, people 1000-59999)
// and systemd's dynamic users (61184-65519). A user namespace that does not map it (a
// rootless container maps 0-65535) makes the runtime fall back to its own uid.
inline constexpr uid_t kFirstSandboxId = 300000;
inline constexpr std::uint32_t kSandboxIdCount = 65536;
// Ids tried per sandbox start before giving up (all held: that many sandboxes run).
inline constexpr std::uint32_t kIdAttempts = 256;

struct IdRange {
    uid_t first = kFirstSandboxId;
    std::uint32_t count = kSandboxIdCount;
};

// One id, held until destroyed.
struct IdLease {
    uid_t id = 0;
    UniqueFd lock;  // the socket bound to the id's name
};

class SandboxIds {
  public:
    // Decides once whether ids can be switched here.
    explicit SandboxIds(const IdRange& range);

    // True: each sandbox gets an id of its own; false: the runtime's own (why() says why).
    bool per_sandbox() const { return per_sandbox_; }
    const std::string& why() const { return why_; }
    const IdRange& range() const { return range_; }

    // A free id of the range. Errc::sandbox_unavailable when none could be locked.
    Result<IdLease> acquire();

  private:
    IdRange range_;
    bool per_sandbox_ = false;
    std::string why_;
    std::mutex m_;
    std::uint32_t next_ = 0;
};

}  // namespace sandflow::sandbox::landlock
