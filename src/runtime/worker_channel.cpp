// runtime::Worker's channel and pipes: queueing frames and sending them as the channel takes
// them, one turn of the epoll set (frames, stdout/stderr, the sandbox's limit events), log
// lines under the call's budgets, and the errors of a worker that died or crossed a limit.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "core/limits.hpp"
#include "runtime/runtime_limits.hpp"
#include "runtime/worker.hpp"
#include "runtime/worker_detail.hpp"

namespace sandflow::runtime {

using worker_detail::poll_timeout_ms;
using worker_detail::protocol_violation;

namespace {

constexpr std::size_t kStderrTailLines = 20;  // kept for the error when a worker dies
constexpr std::size_t kReadChunk = 64u << 10;

}  // namespace

Result<void> Worker::watch_descriptors() {
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) return tl::unexpected(system_error("epoll_create1", errno));
    const std::pair<int, std::uint32_t> fds[] = {{proc_->channel_fd(), kChannelTag},
                                                 {proc_->stdout_fd(), kStdoutTag},
                                                 {proc_->stderr_fd(), kStderrTag},
                                                 {proc_->limit_event_fd(), kLimitTag}};
    for (const auto& [fd, tag] : fds) {
        if (fd < 0) continue;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = tag;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
            return tl::unexpected(system_error("epoll_ctl", errno));
    }
    return {};
}

void Worker::watch_channel_writable(bool on) {
    if (on == watching_writable_ || !proc_) return;
    epoll_event ev{};
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
    ev.data.u32 = kChannelTag;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, proc_->channel_fd(), &ev) == 0)
        watching_writable_ = on;
}

Result<void> Worker::queue_frame(const json::value& frame) {
    std::string bytes = encode_frame(frame);
    if (bytes.size() - limits::kFrameHeaderBytes > limits::kMaxFrameBytes)
        return fail(Errc::limit_exceeded,
                    "the request is " + std::to_string(bytes.size()) +
                        " bytes, over the frame size limit of " +
                        std::to_string(limits::kMaxFrameBytes) + " bytes",
                    {{"limit", "frame_bytes"}, {"value", limits::kMaxFrameBytes}});
    return queue_send(std::move(bytes));
}

Result<void> Worker::queue_send(std::string bytes) {
    if (!proc_) return fail(Errc::worker_crashed, "the worker is not running");
    if (out_off_ == out_.size()) {
        out_ = std::move(bytes);
        out_off_ = 0;
    } else {
        out_ += bytes;
    }
    return flush();
}

Result<void> Worker::flush() {
    while (out_off_ < out_.size()) {
        // MSG_NOSIGNAL: a worker that died must fail this call, not SIGPIPE the runtime.
        const ssize_t n = ::send(proc_->channel_fd(), out_.data() + out_off_,
                                 out_.size() - out_off_, MSG_NOSIGNAL);
        if (n > 0) {
            out_off_ += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            // The worker is slow to read: the rest goes when the channel polls writable.
            watch_channel_writable(true);
            return {};
        }
        return tl::unexpected(died("sending a request"));
    }
    out_.clear();
    out_off_ = 0;
    watch_channel_writable(false);
    return {};
}

Result<bool> Worker::deliver_frames(const FrameHandler& on_frame, std::string_view during) {
    while (auto frame = decoder_.next()) {
        if (!*frame) {
            Error e = frame->error();
            if (e.code == Errc::limit_exceeded)
                return tl::unexpected(limit_kill(
                    "frame_bytes", e.data.at("value").to_number<std::uint64_t>(), during));
            kill();
            return tl::unexpected(protocol_violation(e.message));
        }
        auto done = on_frame(**frame);
        if (!done) {
            if (proc_) kill();
            return tl::unexpected(done.error());
        }
        if (*done) return true;
    }
    if (output_bytes_ > output_limit_)
        return tl::unexpected(limit_kill("output_bytes", output_limit_, during));
    return false;
}

Result<bool> Worker::turn(int timeout_ms, const FrameHandler& on_frame, const LogSink& on_log,
                          std::string_view during) {
    // Frames already decoded go first: they arrived before anything still to be read.
    if (auto done = deliver_frames(on_frame, during); !done || *done) return done;
    if (!proc_) return fail(Errc::worker_crashed, "the worker is not running");
    epoll_event evs[4];
    int n = ::epoll_wait(epoll_.get(), evs, 4, timeout_ms);
    if (n < 0) {
        if (errno != EINTR) return tl::unexpected(system_error("epoll_wait", errno));
        n = 0;
    }
    std::uint32_t ready = 0;
    for (int i = 0; i < n; ++i) {
        const std::uint32_t tag = evs[i].data.u32;
        if (tag == kChannelTag && (evs[i].events & EPOLLOUT)) {
            if (auto ok = flush(); !ok) return tl::unexpected(ok.error());
        }
        if (tag != kChannelTag || (evs[i].events & ~static_cast<std::uint32_t>(EPOLLOUT)))
            ready |= 1u << tag;
    }
    // A limit crossed before the script answered is seen in the same turn as the answer,
    // and wins.
    if ((ready & (1u << kLimitTag)) && proc_) {
        if (auto hit = proc_->limit_crossed())
            return tl::unexpected(limit_kill(hit->limit, hit->value, during));
    }
    if (ready & (1u << kStdoutTag)) read_stdio(0, on_log);
    if (ready & (1u << kStderrTag)) read_stdio(1, on_log);
    if ((ready & (1u << kChannelTag)) && proc_) {
        char buf[kReadChunk];
        for (;;) {
            const ssize_t r = ::read(proc_->channel_fd(), buf, sizeof buf);
            if (r > 0) {
                decoder_.feed(std::string_view(buf, static_cast<std::size_t>(r)));
                if (static_cast<std::size_t>(r) < sizeof buf) break;
                continue;
            }
            if (r < 0 && errno == EINTR) continue;
            if (r < 0 && errno == EAGAIN) break;
            // EOF or a reset: the worker is gone (or closed its channel, which is as good
            // as gone). Frames already received are still delivered first.
            if (auto done = deliver_frames(on_frame, during); !done || *done) return done;
            return tl::unexpected(died(during));
        }
    }
    return deliver_frames(on_frame, during);
}

Result<void> Worker::pump(Clock::time_point deadline, const FrameHandler& on_frame,
                          const LogSink& on_log, std::string_view during) {
    for (;;) {
        auto done = turn(poll_timeout_ms(deadline), on_frame, on_log, during);
        if (!done) return tl::unexpected(done.error());
        if (*done) return {};
        if (Clock::now() >= deadline) return fail(Errc::timeout, "deadline");
    }
}

void Worker::read_stdio(int which, const std::function<void(const LogLine&)>& on_log) {
    if (!proc_) return;
    const int fd = which == 0 ? proc_->stdout_fd() : proc_->stderr_fd();
    if (fd < 0) return;
    char buf[kReadChunk];
    std::string& pending = line_buf_[which];
    auto emit = [&](std::string line) {
        if (which == 1) {
            stderr_tail_.push_back(line);
            if (stderr_tail_.size() > kStderrTailLines) stderr_tail_.erase(stderr_tail_.begin());
        }
        emit_log(LogLine{which == 0 ? LogLine::Source::stdout_ : LogLine::Source::stderr_,
                         std::move(line), which == 0 ? "info" : "warn"},
                 on_log);
    };
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return;  // EAGAIN
        if (n == 0) {
            if (!pending.empty()) emit(std::exchange(pending, {}));
            if (epoll_) (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
            which == 0 ? proc_->close_stdout() : proc_->close_stderr();
            return;
        }
        std::size_t start = 0;
        const std::string_view chunk(buf, static_cast<std::size_t>(n));
        for (;;) {
            const auto nl = chunk.find('\n', start);
            const auto piece =
                chunk.substr(start, nl == std::string_view::npos ? chunk.npos : nl - start);
            if (pending.size() < limits::kMaxLogLineBytes)
                pending.append(piece.substr(0, limits::kMaxLogLineBytes - pending.size()));
            if (nl == std::string_view::npos) break;
            if (pending.size() >= limits::kMaxLogLineBytes) pending += " [line cut]";
            emit(std::exchange(pending, {}));
            start = nl + 1;
        }
        if (static_cast<std::size_t>(n) < sizeof buf) return;
    }
}

void Worker::reset_budget(std::uint64_t output_limit) {
    log_bytes_ = 0;
    log_capped_ = false;
    output_bytes_ = 0;
    output_limit_ = output_limit;
}

bool Worker::count_output(std::size_t bytes) {
    output_bytes_ += bytes;
    return output_bytes_ <= output_limit_;
}

void Worker::emit_log(LogLine line, const std::function<void(const LogLine&)>& on_log) {
    if (!count_output(line.text.size() + 1) || log_capped_) return;
    log_bytes_ += line.text.size() + 1;
    if (log_bytes_ > limits::kMaxLogBytesPerCall) {
        log_capped_ = true;
        line = LogLine{LogLine::Source::context,
                       "[sandflow: this call's log output passed " +
                           std::to_string(limits::kMaxLogBytesPerCall) +
                           " bytes; the rest is dropped]",
                       "warn"};
    }
    on_log(line);
}

void Worker::read_ready_stdio(const LogSink& on_log) {
    if (!proc_) return;
    epoll_event evs[4];
    const int n = ::epoll_wait(epoll_.get(), evs, 4, 0);
    for (int i = 0; i < n; ++i) {
        if (evs[i].data.u32 == kStdoutTag) read_stdio(0, on_log);
        if (evs[i].data.u32 == kStderrTag) read_stdio(1, on_log);
    }
}

void Worker::drain_stdio(const std::function<void(const LogLine&)>& on_log) {
    read_stdio(0, on_log);
    read_stdio(1, on_log);
}

Error Worker::limit_kill(std::string_view limit, std::uint64_t value, std::string_view during) {
    drain_stdio(default_log_);
    const pid_t pid = proc_ ? proc_->pid() : -1;
    kill();
    return Error(Errc::limit_exceeded,
                 "the sandbox of " + filename_ + " (worker pid " + std::to_string(pid) +
                     ") crossed its " + std::string(limit) + " limit of " + std::to_string(value) +
                     " during " + std::string(during) +
                     "; it was killed and the next call starts a new one with the last "
                     "committed state",
                 {{"limit", std::string(limit)}, {"value", value}});
}

Error Worker::died(std::string_view during) {
    drain_stdio(default_log_);
    const pid_t pid = proc_ ? proc_->pid() : -1;
    const auto status = proc_ ? proc_->kill_and_wait() : sandbox::ExitStatus{};
    proc_.reset();
    json::array tail;
    for (const auto& l : stderr_tail_) tail.emplace_back(l);
    if (!status.limit.empty()) {
        return Error(Errc::limit_exceeded,
                     "the worker (pid " + std::to_string(pid) + ") of " + filename_ +
                         " was killed during " + std::string(during) + ": " + status.describe() +
                         "; the next call starts a new worker with the last committed state",
                     {{"limit", status.limit},
                      {"value", status.limit_value},
                      {"exit", status.describe()},
                      {"stderr_tail", std::move(tail)}});
    }
    return Error(Errc::worker_crashed,
                 "the worker (pid " + std::to_string(pid) + ") of " + filename_ + " died during " +
                     std::string(during) + ": " + status.describe() +
                     "; the next call starts a new worker with the last committed state",
                 {{"exit", status.describe()}, {"stderr_tail", std::move(tail)}});
}

}  // namespace sandflow::runtime
