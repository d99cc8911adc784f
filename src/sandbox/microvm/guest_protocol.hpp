// What the host and the microVM's guest agent (guest/agent.cpp, the guest's PID 1) agree on
// (docs/sandbox.md, "The microvm backend"). Header-only and free of the rest of Sandflow:
// the agent is a static binary of its own.
//
// The agent learns what to run from the channel itself: before the worker protocol starts,
// the host writes one *start frame* into the channel (4-byte big-endian length, then the
// payload), which the agent reads from its end of the virtio-serial port; the worker then
// inherits that port as its channel. The payload is a sequence of NUL-terminated entries
// "<key>=<value>": `a` one argument (in order), `e` one environment variable, `w` the working
// directory, and one entry per limit (kLimitKeys). A command line cannot carry this: the
// Python shim alone is larger than the kernel's command line (2 KiB).
//
// How the worker ended reaches the host as QEMU's exit status: the agent writes a code to
// the isa-debug-exit port, and QEMU exits with (code << 1) | 1 (encode_exit/decode_exit).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sandflow::sandbox::microvm {

// The virtio-serial ports' names (the guest finds them in /sys/class/virtio-ports/*/name)
// and the 9p share's tag.
inline constexpr std::string_view kChannelPort = "sandflow.channel";
inline constexpr std::string_view kStdoutPort = "sandflow.stdout";
inline constexpr std::string_view kUsrTag = "sandflow.usr";
// On the kernel's command line of a VM booted to be snapshotted: the agent then writes
// kAgentReady on the channel port once it waits for the start frame, the point every VM
// restored from the snapshot continues from.
inline constexpr std::string_view kSnapshotFlag = "sandflow.snapshot";
inline constexpr char kAgentReady = 'R';
// The isa-debug-exit device's I/O port.
inline constexpr std::uint16_t kExitPort = 0xf4;

// The largest start frame the agent accepts (the worker's command line carries the Python
// shim, ~20 KiB) and the most entries in it.
inline constexpr std::uint32_t kMaxStartFrameBytes = 1u << 20;
inline constexpr std::size_t kMaxStartEntries = 4096;

struct StartSpec {
    std::vector<std::string> argv, env;
    std::string workdir = "/tmp";
    std::uint64_t tmpfs_bytes = 0, tmpfs_inodes = 0;
    std::uint64_t open_files = 0, nproc = 0, cpu_seconds = 0;
    // The host's CLOCK_REALTIME in ns when the frame was written; 0: leave the guest's clock.
    std::uint64_t clock_ns = 0;
};

inline std::string encode_start(const StartSpec& s) {
    std::string p;
    auto add = [&p](std::string_view key, std::string_view value) {
        p.append(key);
        p.push_back('=');
        p.append(value);
        p.push_back('\0');
    };
    for (const auto& a : s.argv) add("a", a);
    for (const auto& e : s.env) add("e", e);
    add("w", s.workdir);
    add("tmpfs_bytes", std::to_string(s.tmpfs_bytes));
    add("tmpfs_inodes", std::to_string(s.tmpfs_inodes));
    add("open_files", std::to_string(s.open_files));
    add("nproc", std::to_string(s.nproc));
    add("cpu_seconds", std::to_string(s.cpu_seconds));
    add("clock_ns", std::to_string(s.clock_ns));
    std::string frame(4, '\0');
    const auto n = static_cast<std::uint32_t>(p.size());
    for (int i = 0; i < 4; ++i)
        frame[static_cast<std::size_t>(i)] = static_cast<char>(n >> (24 - 8 * i));
    return frame + p;
}

// False for a payload that is not a sequence of entries, names an unknown key, has a number
// that is not one, or has no argument.
inline bool decode_start(std::string_view p, StartSpec& s) {
    std::size_t entries = 0;
    while (!p.empty()) {
        const auto end = p.find('\0');
        if (end == std::string_view::npos || ++entries > kMaxStartEntries) return false;
        const std::string_view entry = p.substr(0, end);
        p.remove_prefix(end + 1);
        const auto eq = entry.find('=');
        if (eq == std::string_view::npos) return false;
        const std::string_view key = entry.substr(0, eq), value = entry.substr(eq + 1);
        if (key == "a") {
            s.argv.emplace_back(value);
        } else if (key == "e") {
            s.env.emplace_back(value);
        } else if (key == "w") {
            s.workdir = std::string(value);
        } else {
            std::uint64_t n = 0;
            if (value.empty() || value.size() > 19) return false;
            for (char c : value) {
                if (c < '0' || c > '9') return false;
                n = n * 10 + static_cast<std::uint64_t>(c - '0');
            }
            if (key == "tmpfs_bytes")
                s.tmpfs_bytes = n;
            else if (key == "tmpfs_inodes")
                s.tmpfs_inodes = n;
            else if (key == "open_files")
                s.open_files = n;
            else if (key == "nproc")
                s.nproc = n;
            else if (key == "cpu_seconds")
                s.cpu_seconds = n;
            else if (key == "clock_ns")
                s.clock_ns = n;
            else
                return false;
        }
    }
    return !s.argv.empty() && !s.argv[0].empty() && s.argv[0][0] == '/';
}

// The debug-exit code for how the worker ended (a wait status), and back. QEMU exits with
// (code << 1) | 1 and an exit status has 8 bits, so a code is 1..127: 1 + the exit status
// for 0..62 (63 and above read as 62: "62 or more"), 64 + N for a signal N (1..63). QEMU's
// own exit statuses 0 (the guest powered off or reset without the agent's report: a kernel
// panic, with panic=-1 and -no-reboot) and 1 (QEMU failed) are never a code's.
inline std::uint32_t encode_exit(bool signaled, int value) {
    if (signaled)
        return 64u + static_cast<std::uint32_t>(value < 1 ? 1 : (value > 63 ? 63 : value));
    return 1u + static_cast<std::uint32_t>(value < 0 ? 0 : (value > 62 ? 62 : value));
}
struct GuestExit {
    bool reported = false;  // the agent reported it; false: QEMU's own status
    bool signaled = false;
    int value = 0;  // exit status or signal number
};
inline GuestExit decode_exit(int qemu_status) {
    if (qemu_status < 3 || (qemu_status & 1) == 0) return {};
    const int code = qemu_status >> 1;
    if (code >= 65) return {true, true, code - 64};
    return {true, false, code - 1};
}

}  // namespace sandflow::sandbox::microvm
