// Helpers shared by the test suites: running the built binary, and waiting for a process
// to die. Header-only, so each test executable needs nothing more than this include.
#pragma once

#include <fcntl.h>

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/json.hpp"

namespace sandflow::testing {

struct CliRun {
    int status = -1;  // exit status, -1 when killed by a signal
    std::string out, err;
};

inline std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

// Runs the built `sandflow` (SANDFLOW_BINARY) with `args`, stdin from /dev/null.
inline CliRun run_cli(const std::vector<std::string>& args) {
    char tmpl[] = "/tmp/sandflow-cli-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl), nullptr);
    const std::filesystem::path dir = tmpl;
    std::string cmd = shell_quote(SANDFLOW_BINARY);
    for (const auto& a : args) cmd += " " + shell_quote(a);
    cmd += " >" + shell_quote((dir / "out").string()) + " 2>" +
           shell_quote((dir / "err").string()) + " </dev/null";
    const int raw = std::system(cmd.c_str());
    CliRun r;
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    std::stringstream o, e;
    o << std::ifstream(dir / "out").rdbuf();
    e << std::ifstream(dir / "err").rdbuf();
    r.out = o.str();
    r.err = e.str();
    std::filesystem::remove_all(dir);
    return r;
}

// The JSON-object lines of `text`. Strict: every line must be one (a test failure
// otherwise); lenient: other lines are skipped.
inline std::vector<json::object> json_lines(const std::string& text, bool strict = true) {
    std::vector<json::object> v;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (!strict && (line.empty() || line[0] != '{')) continue;
        auto j = parse_json(line, "output line");
        EXPECT_TRUE(j && j->is_object()) << line;
        if (j && j->is_object()) v.push_back(j->as_object());
    }
    return v;
}

// Waits, at most 5 s, until `pid` is dead but not yet reaped: its parent has not noticed
// yet. For a child of this process that is when waitid() could reap it, which for a
// multi-threaded process (runsc) comes after its leader shows as a zombie, once its other
// threads are gone; for another process's child, when /proc shows it a zombie. False if it
// never got there.
inline bool wait_for_zombie(pid_t pid) {
    const std::string stat = "/proc/" + std::to_string(pid) + "/stat";
    for (int i = 0; i < 500; ++i) {
        siginfo_t info{};
        if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0) {
            if (info.si_pid == pid) return true;
        } else {
            std::string text;
            std::getline(std::ifstream(stat), text);
            if (text.find(") Z ") != std::string::npos) return true;
        }
        ::usleep(10'000);
    }
    return false;
}

// A /proc file's text, "" when it cannot be read. POSIX reads: a process that ends while
// its file is read fails the read with ESRCH, which libstdc++'s streambuf iterators turn
// into an exception.
inline std::string read_proc_file(const std::string& path) {
    std::string out;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    return n < 0 ? std::string() : out;
}

// A process is gone once it is reaped or a zombie (PID 1 may not reap in a container).
inline bool process_gone(pid_t pid) {
    if (::kill(pid, 0) != 0) return true;
    const std::string s = read_proc_file("/proc/" + std::to_string(pid) + "/stat");
    const auto close = s.rfind(')');
    return close == std::string::npos || (close + 2 < s.size() && s[close + 2] == 'Z');
}

inline bool wait_gone(pid_t pid, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        if (process_gone(pid)) return true;
        ::usleep(10'000);
    }
    return process_gone(pid);
}

// The children of `pid`, of all its threads ("self" for this process).
inline std::vector<pid_t> children_of(const std::string& pid) {
    std::vector<pid_t> out;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator("/proc/" + pid + "/task", ec)) {
        std::ifstream in(task.path() / "children");
        pid_t child;
        while (in >> child) out.push_back(child);
    }
    return out;
}

}  // namespace sandflow::testing
