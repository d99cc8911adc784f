// A redis-server of the test's own, on a unix socket in a temp folder, with its data in
// that folder (append-only, fsync always, so a restart keeps it), stopped by its pid.
// available() is false, with why, when redis-server is not installed.
#pragma once

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace sandflow::testing {

class RedisServer {
  public:
    // `fsync_always`: appendfsync always (tests: a restart keeps every write), else
    // everysec, Redis's default (bench).
    explicit RedisServer(bool fsync_always = true) : fsync_(fsync_always ? "always" : "everysec") {
        for (const char* p : {"/usr/bin/redis-server", "/usr/local/bin/redis-server"})
            if (::access(p, X_OK) == 0) binary_ = p;
        if (binary_.empty()) return;
        std::string t = (std::filesystem::temp_directory_path() / "sandflow-redis-XXXXXX").string();
        dir_ = ::mkdtemp(t.data());
        start();
    }
    ~RedisServer() {
        stop();
        if (!dir_.empty()) std::filesystem::remove_all(dir_);
    }
    bool available() const { return !binary_.empty() && pid_ > 0; }
    std::string why_not() const {
        return binary_.empty() ? "redis-server is not installed (Debian: redis-server; "
                                 "scripts/deps.sh installs it)"
                               : "redis-server did not start: " + log_tail();
    }
    std::string log_tail() const {
        std::ifstream in(dir_ / "redis.log");
        std::string all((std::istreambuf_iterator<char>(in)), {});
        return all.size() > 600 ? all.substr(all.size() - 600) : all;
    }
    std::string socket() const { return (dir_ / "redis.sock").string(); }
    std::string url(std::string_view query = {}) const {
        return "redis+unix://" + socket() + (query.empty() ? "" : "?" + std::string(query));
    }
    pid_t pid() const { return pid_; }

    void start() {
        std::filesystem::remove(socket());
        pid_ = ::fork();
        if (pid_ == 0) {
            ::setpgid(0, 0);
            const std::string dir = dir_.string(), sock = socket();
            ::execl(binary_.c_str(), binary_.c_str(), "--port", "0", "--unixsocket", sock.c_str(),
                    "--unixsocketperm", "700", "--dir", dir.c_str(), "--save", "", "--appendonly",
                    "yes", "--appendfsync", fsync_.c_str(), "--daemonize", "no", "--loglevel",
                    "warning", "--logfile", (dir + "/redis.log").c_str(),
                    static_cast<char*>(nullptr));
            ::_exit(127);
        }
        // Ready once it answers PING with PONG (while it loads its data it answers LOADING).
        for (int i = 0; i < 1000; ++i) {
            if (pong()) return;
            if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
                pid_ = -1;
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        stop();
    }
    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

  private:
    bool pong() const {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        const std::string path = socket();
        if (fd < 0 || path.size() >= sizeof a.sun_path) return false;
        std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
        bool ok = false;
        if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
            ::write(fd, "PING\r\n", 6) == 6) {
            char buf[64] = {};
            ok = ::read(fd, buf, sizeof buf - 1) > 0 && std::string_view(buf).starts_with("+PONG");
        }
        ::close(fd);
        return ok;
    }

    std::string fsync_;
    std::string binary_;
    std::filesystem::path dir_;
    pid_t pid_ = -1;
};

}  // namespace sandflow::testing
