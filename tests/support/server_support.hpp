// Helpers for the suites that drive a real `sandflow serve` (SANDFLOW_BINARY) over
// 127.0.0.1: the server as a child process on an ephemeral port, the C++ client, and raw
// sockets for peers the client library would never be (hostile frames, half-open peers,
// refused upgrades). Header-only, like test_support.hpp.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "core/json.hpp"
#include "sandflow/client.hpp"

namespace sandflow::testing {

inline const std::filesystem::path kExamples =
    std::filesystem::path(SANDFLOW_SOURCE_DIR) / "examples/actors";

// A `sandflow serve` child; stdout's first line gives the port.
class ServerProcess {
  public:
    // `in_child` runs in the forked child just before exec: it sets up what the server
    // must find around it (a namespace, a sysctl); it returns false to give up, and the
    // child then exits 126 without starting the server.
    explicit ServerProcess(std::vector<std::string> extra, bool expect_start = true,
                           std::function<bool()> in_child = {}) {
        // The `none` backend unless the test names one: most tests are about the protocol.
        std::vector<std::string> args = {SANDFLOW_BINARY, "serve"};
        if (std::find(extra.begin(), extra.end(), "--backend") == extra.end())
            args.insert(args.end(), {"--backend", "none", "--insecure-no-sandbox"});
        if (std::find(extra.begin(), extra.end(), "--listen") == extra.end())
            args.insert(args.end(), {"--listen", "127.0.0.1:0"});
        // Memory unless the test names a store: serve's default file is shared by every
        // server of the user.
        if (std::find(extra.begin(), extra.end(), "--state") == extra.end())
            args.insert(args.end(), {"--state", "memory"});
        args.insert(args.end(), extra.begin(), extra.end());
        int out[2];
        EXPECT_EQ(::pipe(out), 0);
        err_path_ =
            std::filesystem::temp_directory_path() / ("sandflow-e2e-" + std::to_string(::getpid()) +
                                                      "-" + std::to_string(counter_++) + ".err");
        pid_ = ::fork();
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // no server outlives a crashed test
            ::dup2(out[1], 1);
            const int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            ::dup2(err, 2);
            ::close(out[0]);
            if (in_child && !in_child()) ::_exit(126);
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(out[1]);
        out_ = out[0];
        if (!expect_start) return;
        std::string line;
        char c;
        pollfd pfd{out_, POLLIN, 0};
        while (::poll(&pfd, 1, 10'000) > 0 && ::read(out_, &c, 1) == 1 && c != '\n') line += c;
        auto j = parse_json(line, "serve stdout");
        EXPECT_TRUE(j && j->is_object()) << "serve printed: '" << line << "'\n" << stderr_text();
        if (j && j->is_object()) port_ = static_cast<int>(j->at("port").as_int64());
    }
    ~ServerProcess() {
        if (pid_ > 0 && !reaped_) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        if (out_ >= 0) ::close(out_);
        std::filesystem::remove(err_path_);
    }
    ServerProcess(const ServerProcess&) = delete;
    ServerProcess& operator=(const ServerProcess&) = delete;
    int port() const { return port_; }
    pid_t pid() const { return pid_; }
    std::string url() const { return "ws://127.0.0.1:" + std::to_string(port_); }
    std::string stderr_text() const {
        std::stringstream s;
        s << std::ifstream(err_path_).rdbuf();
        return s.str();
    }
    // The exit status, or -1 if it has not ended within `timeout`.
    int wait_exit(std::chrono::milliseconds timeout) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < end) {
            int st = 0;
            if (::waitpid(pid_, &st, WNOHANG) == pid_) {
                reaped_ = true;
                return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return -1;
    }

  private:
    static inline int counter_ = 0;
    pid_t pid_ = -1;
    int out_ = -1;
    int port_ = 0;
    bool reaped_ = false;
    std::filesystem::path err_path_;
};

inline std::unique_ptr<client::Client> connect(const ServerProcess& s, client::Options o = {}) {
    auto c = client::Client::connect(s.url(), o);
    EXPECT_TRUE(c) << (c ? "" : c.error().message);
    return c ? std::move(*c) : nullptr;
}

// Raw sockets, for peers the client library would never be.
inline int tcp_connect(int port, int rcvbuf = 0) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return fd;
}

inline void write_all(int fd, std::string_view s) {
    while (!s.empty()) {
        const ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
        if (n <= 0) return;
        s.remove_prefix(static_cast<std::size_t>(n));
    }
}

// Reads until the peer closes or `timeout` passes; returns what arrived and whether it
// closed.
inline std::pair<std::string, bool> read_until_closed(int fd, std::chrono::milliseconds timeout) {
    std::string got;
    const auto end = std::chrono::steady_clock::now() + timeout;
    char buf[65536];
    while (std::chrono::steady_clock::now() < end) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return {got, true};
        got.append(buf, static_cast<std::size_t>(n));
    }
    return {got, false};
}

inline std::string http_get(int port, const std::string& path, const std::string& headers = "") {
    const int fd = tcp_connect(port);
    write_all(fd,
              "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + "\r\n");
    auto [text, closed] = read_until_closed(fd, std::chrono::seconds(3));
    ::close(fd);
    return text;
}

inline const std::string kUpgrade =
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

// Upgrades and returns the socket, or -1.
inline int ws_open(int port, const std::string& headers = "", int rcvbuf = 0) {
    const int fd = tcp_connect(port, rcvbuf);
    write_all(fd, kUpgrade + headers + "\r\n");
    std::string head;
    char c;
    while (head.find("\r\n\r\n") == std::string::npos && ::recv(fd, &c, 1, 0) == 1) head += c;
    if (head.find(" 101 ") == std::string::npos) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// One masked client frame.
inline std::string ws_frame(std::string_view payload, std::uint8_t opcode = 0x1) {
    std::string f;
    f += static_cast<char>(0x80 | opcode);
    if (payload.size() < 126) {
        f += static_cast<char>(0x80 | payload.size());
    } else if (payload.size() < 65536) {
        f += static_cast<char>(0x80 | 126);
        f += static_cast<char>(payload.size() >> 8);
        f += static_cast<char>(payload.size() & 0xff);
    } else {
        f += static_cast<char>(0x80 | 127);
        for (int i = 7; i >= 0; --i) f += static_cast<char>((payload.size() >> (8 * i)) & 0xff);
    }
    const char mask[4] = {0x12, 0x34, 0x56, 0x78};
    f.append(mask, 4);
    for (std::size_t i = 0; i < payload.size(); ++i)
        f += static_cast<char>(payload[i] ^ mask[i % 4]);
    return f;
}

// Reads exactly `n` bytes unless the peer closes or `timeout` passes first.
inline bool read_exactly(int fd, std::size_t n, std::string& out,
                         std::chrono::steady_clock::time_point deadline) {
    out.clear();
    char buf[4096];
    while (out.size() < n) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 100))) <= 0)
            continue;
        const ssize_t got = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
        if (got <= 0) return false;
        out.append(buf, static_cast<std::size_t>(got));
    }
    return true;
}

// A frame from the server (servers never mask). `close_code` is set for a close frame
// that carries one.
struct ServerFrame {
    std::uint8_t opcode = 0;
    bool fin = false;
    std::string payload;
    std::optional<int> close_code;
};

// The next frame the server sends, or nothing if the socket closed or `timeout` passed
// before a whole frame arrived.
inline std::optional<ServerFrame> read_server_frame(int fd, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string head;
    if (!read_exactly(fd, 2, head, deadline)) return std::nullopt;
    ServerFrame f;
    const auto b0 = static_cast<std::uint8_t>(head[0]);
    const auto b1 = static_cast<std::uint8_t>(head[1]);
    f.fin = (b0 & 0x80) != 0;
    f.opcode = b0 & 0x0f;
    EXPECT_EQ(b1 & 0x80, 0) << "a server frame must not be masked";
    std::uint64_t len = b1 & 0x7f;
    if (len >= 126) {
        std::string ext;
        if (!read_exactly(fd, len == 126 ? 2 : 8, ext, deadline)) return std::nullopt;
        len = 0;
        for (char c : ext) len = (len << 8) | static_cast<std::uint8_t>(c);
    }
    if (!read_exactly(fd, static_cast<std::size_t>(len), f.payload, deadline)) return std::nullopt;
    if (f.opcode == 0x8 && f.payload.size() >= 2)
        f.close_code = (static_cast<std::uint8_t>(f.payload[0]) << 8) |
                       static_cast<std::uint8_t>(f.payload[1]);
    return f;
}

// The next text message from the server, parsed, skipping pings; nothing if the
// connection closed or `timeout` passed.
inline std::optional<json::value> read_server_json(int fd, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        auto f = read_server_frame(fd, std::chrono::duration_cast<std::chrono::milliseconds>(
                                           deadline - std::chrono::steady_clock::now()));
        if (!f || f->opcode == 0x8) return std::nullopt;
        if (f->opcode != 0x1) continue;
        auto j = parse_json(f->payload, "server message");
        EXPECT_TRUE(j) << f->payload;
        if (!j) return std::nullopt;
        return std::move(*j);
    }
    return std::nullopt;
}

// The default backend must be able to run here, or the sandboxed tests are skipped.
inline bool default_sandbox_runs(std::string* why) {
    const std::string cmd = std::string(SANDFLOW_BINARY) + " doctor >/dev/null 2>&1";
    const int st = std::system(cmd.c_str());
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return true;
    *why = "`sandflow doctor` says the default sandbox backend cannot run on this host";
    return false;
}

// A fresh directory per test (for actor scripts), removed after it.
class ActorDirTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/sandflow-e2e-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::filesystem::path write(const std::string& name, const std::string& text) {
        std::filesystem::create_directories((dir_ / name).parent_path());
        std::ofstream(dir_ / name) << text;
        return dir_ / name;
    }
    std::filesystem::path dir_;
};

}  // namespace sandflow::testing
