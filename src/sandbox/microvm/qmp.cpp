#include "sandbox/microvm/qmp.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "sandbox/microvm/microvm_backend.hpp"
#include "sandbox/microvm/qemu_launch.hpp"

namespace sandflow::sandbox::microvm {

const std::string kMigrateCaps =
    R"({"execute":"migrate-set-capabilities","arguments":{"capabilities":)"
    R"([{"capability":"x-ignore-shared","state":true}]}})";

Result<void> Qmp::open(Clock::time_point deadline) {
    auto greeting = next(deadline);
    if (!greeting) return tl::unexpected(greeting.error());
    auto ok = run(R"({"execute":"qmp_capabilities"})", deadline);
    if (!ok) return tl::unexpected(ok.error());
    return {};
}

Result<json::value> Qmp::run(std::string_view command, Clock::time_point deadline, int pass_fd) {
    std::string line(command);
    line.push_back('\n');
    iovec iov{line.data(), line.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (pass_fd >= 0) {
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    // A command is far smaller than the socket's buffer: one sendmsg takes it whole.
    if (::sendmsg(fd_, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()))
        return tl::unexpected(system_error("send to QEMU's monitor", errno));
    for (;;) {
        auto v = next(deadline);
        if (!v) return tl::unexpected(v.error());
        const json::object* o = v->if_object();
        if (o == nullptr || o->contains("event")) continue;
        if (const auto* r = o->if_contains("return")) return *r;
        return tl::unexpected(unavailable("QEMU's monitor refused " + std::string(command) + ": " +
                                          to_json_string(*v)));
    }
}

Result<void> Qmp::wait_migrated(Clock::time_point deadline) {
    for (;;) {
        auto r = run(R"({"execute":"query-migrate"})", deadline);
        if (!r) return tl::unexpected(r.error());
        const json::object* o = r->if_object();
        const json::value* st = o ? o->if_contains("status") : nullptr;
        const std::string status = st && st->is_string() ? std::string(st->get_string()) : "";
        if (status == "completed") return {};
        if (status == "failed" || status == "cancelled")
            return tl::unexpected(
                unavailable("QEMU's migration " + status + ": " + to_json_string(*r)));
        if (Clock::now() >= deadline)
            return tl::unexpected(unavailable("QEMU's migration did not end within " +
                                              std::to_string(kQmpTimeout.count()) + " s"));
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

Result<json::value> Qmp::next(Clock::time_point deadline) {
    for (;;) {
        if (auto nl = buf_.find('\n'); nl != std::string::npos) {
            const std::string line = buf_.substr(0, nl);
            buf_.erase(0, nl + 1);
            return parse_json(line, "QEMU's monitor");
        }
        if (buf_.size() > kMaxQmpLine)
            return tl::unexpected(unavailable("QEMU's monitor sent a line over " +
                                              std::to_string(kMaxQmpLine) + " bytes"));
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0)
            return tl::unexpected(unavailable("QEMU's monitor did not answer within " +
                                              std::to_string(kQmpTimeout.count()) + " s"));
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR)
            return tl::unexpected(system_error("poll QEMU's monitor", errno));
        char chunk[4096];
        const ssize_t n = ::recv(fd_, chunk, sizeof chunk, MSG_DONTWAIT);
        if (n == 0) return tl::unexpected(unavailable("QEMU closed its monitor (it ended)"));
        if (n > 0) buf_.append(chunk, static_cast<std::size_t>(n));
    }
}

}  // namespace sandflow::sandbox::microvm
