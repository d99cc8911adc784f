#include "runtime/warm_pool.hpp"

#include <system_error>

#include "core/log.hpp"

namespace sandflow::runtime {

namespace {
constexpr actor::Language kLanguages[] = {actor::Language::python, actor::Language::javascript};
}

Result<std::unique_ptr<WarmPool>> WarmPool::create(sandbox::Backend& backend, PoolOptions options) {
    for (auto [name, size] : {std::pair{"python", options.python}, {"node", options.node}}) {
        if (size > limits::kMaxPoolSize)
            return fail(Errc::invalid_argument,
                        std::string("the warm pool size for ") + name + " is " +
                            std::to_string(size) + ", over the limit of " +
                            std::to_string(limits::kMaxPoolSize) + "; use a smaller size",
                        {{"language", name}, {"value", size}, {"max", limits::kMaxPoolSize}});
    }
    std::unique_ptr<WarmPool> pool(new WarmPool(backend, options));
    try {
        pool->thread_ = std::thread([p = pool.get()] { p->refill_loop(); });
    } catch (const std::system_error& e) {  // the host is out of threads (EAGAIN)
        return fail(Errc::io, std::string("cannot start the warm pool's thread: ") + e.what() +
                                  "; start with --pool-python 0 --pool-node 0, or free "
                                  "processes on this host");
    }
    return pool;
}

WarmPool::WarmPool(sandbox::Backend& backend, PoolOptions options)
    : backend_(backend), options_(std::move(options)) {
    for (auto lang : kLanguages) {
        Queue& q = queues_.emplace_back();
        q.language = lang;
        q.packages =
            lang == actor::Language::python ? options_.python_packages : options_.node_packages;
        q.target = q.stats.target = size_of(lang);
    }
}

WarmPool::~WarmPool() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    // Idle workers are killed by their destructors, on this thread: the refill thread
    // that spawned them is gone, so their parent-death signal may already have fired.
}

std::size_t WarmPool::size_of(actor::Language language) const {
    return language == actor::Language::python ? options_.python : options_.node;
}

WarmPool::Queue* WarmPool::queue(actor::Language language,
                                 const std::vector<sandbox::SharedDir>& packages) {
    for (auto& q : queues_)
        if (q.language == language && q.packages == packages) return &q;
    return nullptr;
}

std::unique_ptr<Worker> WarmPool::take(actor::Language language,
                                       const std::vector<sandbox::SharedDir>& packages) {
    std::unique_ptr<Worker> taken;
    std::vector<std::unique_ptr<Worker>> dead;
    {
        std::lock_guard lock(mu_);
        Queue* q = queue(language, packages);
        if (!q && size_of(language) > 0 &&
            queues_.size() < std::size(kLanguages) + limits::kMaxPoolPackageLists) {
            q = &queues_.emplace_back();
            q->language = language;
            q->packages = packages;
            q->target = q->stats.target = size_of(language);
        }
        if (!q) return nullptr;
        while (!q->idle.empty() && !taken) {
            auto w = std::move(q->idle.front());
            q->idle.pop_front();
            if (w->alive())
                taken = std::move(w);
            else
                dead.push_back(std::move(w));
        }
        last_take_ = Clock::now();
        if (q->short_since == Clock::time_point{}) q->short_since = last_take_;
        if (taken)
            ++q->stats.taken;
        else if (q->target > 0)
            ++q->stats.missed;
    }
    wake_.notify_all();
    changed_.notify_all();
    return taken;  // `dead` is reaped here, outside the lock
}

bool WarmPool::wait_full(Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    return changed_.wait_until(lock, deadline, [&] {
        for (const auto& q : queues_)
            if (q.idle.size() < q.target) return false;
        return true;
    });
}

PoolStats WarmPool::stats() const {
    std::lock_guard lock(mu_);
    PoolStats s;
    for (const auto& q : queues_) {
        auto& l = q.language == actor::Language::python ? s.python : s.node;
        l.target += q.stats.target;
        l.idle += q.idle.size();
        l.taken += q.stats.taken;
        l.missed += q.stats.missed;
        l.started += q.stats.started;
        l.failed += q.stats.failed;
        ++l.package_lists;
    }
    return s;
}

void WarmPool::refill_loop() {
    std::unique_lock lock(mu_);
    while (!stop_) {
        // The queue furthest below its target goes first, so one slow language or set does
        // not starve the others.
        Queue* pick = nullptr;
        std::size_t most_missing = 0;
        Clock::time_point next_retry = Clock::time_point::max();
        const auto now = Clock::now();
        for (auto& q : queues_) {
            if (q.idle.size() >= q.target) continue;
            if (q.retry_at > now) {
                next_retry = std::min(next_retry, q.retry_at);
                continue;
            }
            const auto settled = std::min(last_take_ + limits::kPoolRefillDelay,
                                          q.short_since + limits::kPoolRefillMaxWait);
            if (settled > now) {
                next_retry = std::min(next_retry, settled);
                continue;
            }
            const std::size_t missing = q.target - q.idle.size();
            if (missing > most_missing) {
                most_missing = missing;
                pick = &q;
            }
        }
        if (!pick) {
            if (next_retry == Clock::time_point::max())
                wake_.wait(lock);
            else
                wake_.wait_until(lock, next_retry);
            continue;
        }
        const actor::Language language = pick->language;
        const std::vector<sandbox::SharedDir> packages = pick->packages;
        lock.unlock();
        auto w = Worker::spawn(backend_, language, options_.start_timeout, {}, std::nullopt,
                               nullptr, packages);
        lock.lock();
        Queue& q = *pick;  // queues are never removed while the pool lives
        if (!w) {
            ++q.stats.failed;
            // A list of sets an instance asked for is not retried: its instance's own start
            // met the same error.
            if (&q != &queues_[0] && &q != &queues_[1]) {
                q.target = 0;
                spdlog::warn(
                    "warm pool: could not start a {} sandbox with {} package set(s) "
                    "({}); not pooling that list",
                    actor::language_name(language), packages.size(), w.error().message);
                continue;
            }
            q.retry_at = Clock::now() + limits::kPoolRetryDelay;
            spdlog::warn("warm pool: could not start a {} sandbox ({}); retrying in {} ms",
                         actor::language_name(language), w.error().message,
                         limits::kPoolRetryDelay.count());
            continue;
        }
        ++q.stats.started;
        q.retry_at = {};
        q.idle.push_back(std::move(*w));
        if (q.idle.size() >= q.target) q.short_since = {};
        changed_.notify_all();
    }
}

}  // namespace sandflow::runtime
