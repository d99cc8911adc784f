#include "sandbox/start_timeline.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <new>

namespace sandflow::sandbox {

namespace {

constexpr std::string_view kNames[] = {
    "spawn begin",    "plans built",      "cgroups created",   "clone",
    "child running",  "id maps written",  "cgroups attached",  "released",
    "child released", "cgroups entered",  "became root",       "cgroup namespace",
    "mounts done",    "hostname set",     "worker forked",     "ids dropped",
    "rlimits set",    "landlock applied", "seccomp installed", "execve",
    "exec reported",  "interpreter up",   "sdk ready",         "hello received",
    "load sent",      "load received",    "script loaded",     "loaded received",
    "call sent",      "call received",    "result sent",       "result received",
};
static_assert(std::size(kNames) == static_cast<std::size_t>(StartMark::count_));

}  // namespace

std::string_view start_mark_name(StartMark m) {
    const auto i = static_cast<std::size_t>(m);
    return i < std::size(kNames) ? kNames[i] : "?";
}

std::int64_t monotonic_ns() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

Result<std::unique_ptr<StartTimeline>> StartTimeline::create() {
    void* p =
        ::mmap(nullptr, sizeof(Page), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return tl::unexpected(system_error("mmap for a start timeline", errno));
    auto* page = new (p) Page;
    page->count.store(0);
    return std::unique_ptr<StartTimeline>(new StartTimeline(page));
}

StartTimeline::~StartTimeline() {
    page_->~Page();
    ::munmap(page_, sizeof(Page));
}

void StartTimeline::mark_at(StartMark m, std::int64_t ns) noexcept {
    const std::uint32_t i = page_->count.fetch_add(1, std::memory_order_relaxed);
    if (i < kMaxMarks) page_->entries[i] = Entry{m, ns};
}

std::vector<StartTimeline::Entry> StartTimeline::entries() const {
    const std::uint32_t n =
        std::min<std::uint32_t>(page_->count.load(std::memory_order_acquire), kMaxMarks);
    std::vector<Entry> out(page_->entries, page_->entries + n);
    std::stable_sort(out.begin(), out.end(),
                     [](const Entry& a, const Entry& b) { return a.ns < b.ns; });
    return out;
}

void StartTimeline::clear() noexcept {
    page_->count.store(0);
}

}  // namespace sandflow::sandbox
