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
    : backend_(backend), options_(options) {
    queue(actor::Language::python).target = options.python;
    queue(actor::Language::javascript).target = options.node;
    queue(actor::Language::python).stats.target = options.python;
    queue(actor::Language::javascript).stats.target = options.node;
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

WarmPool::Queue& WarmPool::queue(actor::Language language) {
    return queues_[language == actor::Language::python ? 0 : 1];
}

std::unique_ptr<Worker> WarmPool::take(actor::Language language) {
    std::unique_ptr<Worker> taken;
    std::vector<std::unique_ptr<Worker>> dead;
    {
        std::lock_guard lock(mu_);
        Queue& q = queue(language);
        while (!q.idle.empty() && !taken) {
            auto w = std::move(q.idle.front());
            q.idle.pop_front();
            if (w->alive())
                taken = std::move(w);
            else
                dead.push_back(std::move(w));
        }
        last_take_ = Clock::now();
        if (q.short_since == Clock::time_point{}) q.short_since = last_take_;
        if (taken)
            ++q.stats.taken;
        else if (q.target > 0)
            ++q.stats.missed;
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
    s.python = queues_[0].stats;
    s.python.idle = queues_[0].idle.size();
    s.node = queues_[1].stats;
    s.node.idle = queues_[1].idle.size();
    return s;
}

void WarmPool::refill_loop() {
    // Which language was last found short after a failure, and when it may be tried again.
    Clock::time_point retry_at[2] = {};
    std::unique_lock lock(mu_);
    while (!stop_) {
        // The language furthest below its target goes first, so one slow language does
        // not starve the other.
        int pick = -1;
        std::size_t most_missing = 0;
        Clock::time_point next_retry = Clock::time_point::max();
        const auto now = Clock::now();
        for (int i = 0; i < 2; ++i) {
            const Queue& q = queues_[i];
            if (q.idle.size() >= q.target) continue;
            if (retry_at[i] > now) {
                next_retry = std::min(next_retry, retry_at[i]);
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
                pick = i;
            }
        }
        if (pick < 0) {
            if (next_retry == Clock::time_point::max())
                wake_.wait(lock);
            else
                wake_.wait_until(lock, next_retry);
            continue;
        }
        lock.unlock();
        auto w = Worker::spawn(backend_, kLanguages[pick], options_.start_timeout);
        lock.lock();
        Queue& q = queues_[pick];
        if (!w) {
            ++q.stats.failed;
            retry_at[pick] = Clock::now() + limits::kPoolRetryDelay;
            spdlog::warn("warm pool: could not start a {} sandbox ({}); retrying in {} ms",
                         actor::language_name(kLanguages[pick]), w.error().message,
                         limits::kPoolRetryDelay.count());
            continue;
        }
        ++q.stats.started;
        retry_at[pick] = {};
        q.idle.push_back(std::move(*w));
        if (q.idle.size() >= q.target) q.short_since = {};
        changed_.notify_all();
    }
}

}  // namespace sandflow::runtime
