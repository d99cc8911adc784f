#include "runtime/state/resp.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "runtime/state/store_limits.hpp"

namespace sandflow::runtime {

namespace {

std::string encode(const std::vector<std::string>& cmd) {
    std::string out = "*" + std::to_string(cmd.size()) + "\r\n";
    for (const auto& a : cmd) {
        out += "$" + std::to_string(a.size()) + "\r\n";
        out += a;
        out += "\r\n";
    }
    return out;
}

// Elements of one reply array: a Lua reply of the state's keys is the largest.
constexpr std::int64_t kMaxArrayItems = 4 * 10'000 + 16;

}  // namespace

RespConnection::~RespConnection() {
    close();
}

void RespConnection::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buf_.clear();
    pos_ = 0;
}

Error RespConnection::broken(const std::string& what) {
    close();
    return Error(Errc::state_store,
                 "redis at " + where_ + ": " + what +
                     "; check that Redis runs there (the --state URL), the next call retries",
                 {{"store", "redis"}, {"redis", where_}});
}

Result<void> RespConnection::ensure(const RedisTarget& t, std::chrono::milliseconds timeout) {
    if (fd_ >= 0) return {};
    where_ = t.name();
    int fd = -1;
    if (!t.unix_path.empty()) {
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        if (t.unix_path.size() >= sizeof a.sun_path)
            return tl::unexpected(broken("the socket path is too long"));
        std::memcpy(a.sun_path, t.unix_path.c_str(), t.unix_path.size() + 1);
        fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            const int err = errno;
            if (fd >= 0) ::close(fd);
            return tl::unexpected(broken(std::string("connect: ") + std::strerror(err)));
        }
    } else {
        addrinfo hints{};
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        const std::string port = std::to_string(t.port);
        if (const int rc = ::getaddrinfo(t.host.c_str(), port.c_str(), &hints, &res); rc != 0)
            return tl::unexpected(broken(std::string("resolve: ") + ::gai_strerror(rc)));
        int err = 0;
        for (addrinfo* p = res; p && fd < 0; p = p->ai_next) {
            fd = ::socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol);
            if (fd >= 0 && ::connect(fd, p->ai_addr, p->ai_addrlen) != 0) {
                err = errno;
                ::close(fd);
                fd = -1;
            }
        }
        ::freeaddrinfo(res);
        if (fd < 0) return tl::unexpected(broken(std::string("connect: ") + std::strerror(err)));
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    fd_ = fd;
    if (t.db != 0) {
        auto r = command({"SELECT", std::to_string(t.db)});
        if (!r) return tl::unexpected(r.error());
        if (r->type == RespValue::Type::error)
            return tl::unexpected(broken("SELECT " + std::to_string(t.db) + ": " + r->str));
    }
    return {};
}

Result<void> RespConnection::write_all(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
        const ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return tl::unexpected(
                broken(std::string("write: ") + (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
                                                     ? "timed out"
                                                     : std::strerror(errno))));
        off += static_cast<std::size_t>(n);
    }
    return {};
}

Result<void> RespConnection::fill(std::size_t need) {
    while (buf_.size() - pos_ < need) {
        if (pos_ > 0 && pos_ == buf_.size()) {
            buf_.clear();
            pos_ = 0;
        }
        char chunk[65536];
        const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) return tl::unexpected(broken("the connection was closed"));
        if (n < 0)
            return tl::unexpected(
                broken(std::string("read: ") + (errno == EAGAIN || errno == EWOULDBLOCK
                                                    ? "no answer in time"
                                                    : std::strerror(errno))));
        buf_.append(chunk, static_cast<std::size_t>(n));
    }
    return {};
}

Result<std::string> RespConnection::line() {
    constexpr std::size_t kMaxLine = 64 << 10;  // a status or error line, a length
    for (;;) {
        const auto end = buf_.find("\r\n", pos_);
        if (end != std::string::npos) {
            std::string out = buf_.substr(pos_, end - pos_);
            pos_ = end + 2;
            return out;
        }
        if (buf_.size() - pos_ > kMaxLine)
            return tl::unexpected(broken("a reply line longer than 64 KiB"));
        if (auto ok = fill(buf_.size() - pos_ + 1); !ok) return tl::unexpected(ok.error());
    }
}

Result<RespValue> RespConnection::read_value(std::size_t depth) {
    if (depth > limits::kMaxRedisReplyDepth)
        return tl::unexpected(broken("a reply nested deeper than kMaxRedisReplyDepth"));
    auto l = line();
    if (!l) return tl::unexpected(l.error());
    if (l->empty()) return tl::unexpected(broken("an empty reply line"));
    RespValue v;
    const char kind = (*l)[0];
    const std::string rest = l->substr(1);
    auto number = [&]() -> Result<std::int64_t> {
        char* end = nullptr;
        errno = 0;
        const long long n = std::strtoll(rest.c_str(), &end, 10);
        if (errno != 0 || end == rest.c_str() || *end != '\0')
            return tl::unexpected(broken("a malformed number in a reply"));
        return static_cast<std::int64_t>(n);
    };
    switch (kind) {
        case '+':
            v.type = RespValue::Type::string;
            v.str = rest;
            return v;
        case '-':
            v.type = RespValue::Type::error;
            v.str = rest;
            return v;
        case ':': {
            auto n = number();
            if (!n) return tl::unexpected(n.error());
            v.type = RespValue::Type::integer;
            v.integer = *n;
            return v;
        }
        case '$': {
            auto n = number();
            if (!n) return tl::unexpected(n.error());
            if (*n < 0) return v;  // nil
            if (static_cast<std::uint64_t>(*n) > limits::kMaxRedisReplyBytes)
                return tl::unexpected(broken("a reply of " + std::to_string(*n) +
                                             " bytes, over kMaxRedisReplyBytes"));
            const auto len = static_cast<std::size_t>(*n);
            if (auto ok = fill(len + 2); !ok) return tl::unexpected(ok.error());
            v.type = RespValue::Type::string;
            v.str = buf_.substr(pos_, len);
            pos_ += len + 2;
            return v;
        }
        case '*': {
            auto n = number();
            if (!n) return tl::unexpected(n.error());
            if (*n < 0) return v;
            if (*n > kMaxArrayItems)
                return tl::unexpected(broken("a reply array of " + std::to_string(*n) + " items"));
            v.type = RespValue::Type::array;
            v.array.reserve(static_cast<std::size_t>(*n));
            for (std::int64_t i = 0; i < *n; ++i) {
                auto item = read_value(depth + 1);
                if (!item) return tl::unexpected(item.error());
                v.array.push_back(std::move(*item));
            }
            return v;
        }
        default:
            return tl::unexpected(broken("a reply that is not RESP (is it Redis?)"));
    }
}

Result<std::vector<RespValue>> RespConnection::pipeline(
    const std::vector<std::vector<std::string>>& cmds) {
    if (fd_ < 0) return tl::unexpected(broken("not connected"));
    std::string out;
    for (const auto& c : cmds) out += encode(c);
    if (auto ok = write_all(out); !ok) return tl::unexpected(ok.error());
    std::vector<RespValue> replies;
    replies.reserve(cmds.size());
    for (std::size_t i = 0; i < cmds.size(); ++i) {
        auto v = read_value(0);
        if (!v) return tl::unexpected(v.error());
        replies.push_back(std::move(*v));
    }
    return replies;
}

Result<RespValue> RespConnection::command(const std::vector<std::string>& cmd) {
    auto r = pipeline({cmd});
    if (!r) return tl::unexpected(r.error());
    return std::move(r->front());
}

}  // namespace sandflow::runtime
