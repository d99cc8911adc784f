// Workers watched on the event loop: during a call (its outputs, its response, its
// deadline) and between calls (what it prints is logged, and a frame, a crossed limit or
// its death costs it the worker at once instead of failing the next call).
#include "core/log.hpp"
#include "server/call.hpp"

namespace sandflow::server {

// On the slot's strand, inside one of its jobs, with a worker: s.watch watches it.
Result<void> Server::Impl::watch_worker(Slot& s) {
    if (s.watch && s.watch_serial == s.inst->worker_serial()) return {};
    s.watch.reset();
    auto w = s.queue->strand()->watch(s.inst->wait_fd());
    if (!w) return tl::unexpected(w.error());
    s.watch = std::move(*w);
    s.watch_serial = s.inst->worker_serial();
    return {};
}

// On the slot's strand, with a call running: wait for the worker (a wait also sees
// what the worker sent before it was armed).
void Server::Impl::await_worker(const std::shared_ptr<ProcessCall>& pc) {
    Slot& s = *pc->slot;
    s.watch->wait(s.inst->deadline(), [this, pc](bool expired) {
        Slot& slot = *pc->slot;
        auto r = expired ? std::optional(slot.inst->expire()) : slot.inst->advance();
        if (!r) return await_worker(pc);
        commit_or_answer(pc, std::move(*r));
    });
}

// Between calls the worker is watched too, so that what it does then is dealt with when
// it happens instead of by the next call: what it prints is logged (the pipe never
// fills), and a frame, a crossed limit or its death costs it the worker at once
// (check_idle_worker). The wait is armed inside a job on the slot's strand before it ends;
// the slot's next call replaces it with its own. A job on the pool posts it instead
// (watch_between_calls_later). Without a strand, the next call sees all of it.
void Server::Impl::watch_between_calls(const std::shared_ptr<Slot>& sp) {
    Slot& s = *sp;
    if (!s.queue->strand() || !s.inst || s.inst->wait_fd() < 0 || s.removed) return;
    if (auto w = watch_worker(s); !w) {
        spdlog::warn("{}: {}; the worker is not watched between calls", s.key, w.error().message);
        return;
    }
    // The callback only posts a job: it may run while a job of the slot runs on the pool.
    // It holds the slot weakly, as the slot holds the watch.
    s.watch->wait(Clock::time_point::max(), [this, weak = std::weak_ptr<Slot>(sp)](bool) {
        auto slot = weak.lock();
        if (!slot || slot->removed) return;
        slot->queue->post_async([this, slot](SerialQueue::Done done) {
            // A removed slot's jobs may outlive the server: `this` is not touched then.
            if (!slot->removed) check_idle_worker(slot);
            done();
        });
    });
}

void Server::Impl::watch_between_calls_later(const std::shared_ptr<Slot>& sp) {
    if (!sp->queue->strand()) return;
    sp->queue->post_async([this, sp](SerialQueue::Done done) {
        if (!sp->removed) watch_between_calls(sp);
        done();
    });
}

// A job: the idle worker polled readable.
void Server::Impl::check_idle_worker(const std::shared_ptr<Slot>& sp) {
    Slot& s = *sp;
    metrics.idle_checks++;
    if (!s.inst) return;
    if (auto ok = s.inst->poll_idle(); !ok) {
        const Error& e = ok.error();
        metrics.count_idle_loss(e);
        s.lost_between_calls++;
        {
            std::lock_guard lk(s.loss_mu);
            s.last_loss = e.message;
        }
        s.pid = -1;
        s.set_state(SlotState::down);
        spdlog::warn("{}: worker lost between calls: {}", s.key, e.message);
    }
    watch_between_calls(sp);
}

}  // namespace sandflow::server
