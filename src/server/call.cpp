// A `process` call's path: from its params to its turn on the instance's queue, run on the
// event loop (a live worker) or on the pool (a sandbox to start first), its outputs
// streamed as script_output notifications, a changed state committed to the store before
// the answer, and a call run again on the reloaded state when another server committed
// first (state_conflict).
#include <signal.h>

#include "core/log.hpp"
#include "rpc/rpc_limits.hpp"
#include "server/call.hpp"

namespace sandflow::server {

void Server::Impl::process_call(const Reply& reply, const Params& p) {
    const auto start = Clock::now();
    auto params = parse_process(p);
    if (!params) return refuse_call(reply, "process", params.error());
    auto slot = slot_for(params->actor_id, params->instance_id, true);
    if (!slot) return refuse_call(reply, "process", slot.error());
    auto pc = std::make_shared<ProcessCall>();
    pc->reply = reply;
    pc->slot = *slot;
    pc->call = std::make_shared<CallState>();
    pc->key = reply.session->track(reply.id, reply.notification, pc->call);
    pc->req = std::move(params->req);
    pc->limits_asked = std::move(params->limits);
    pc->call_id = std::move(params->call_id);
    // A store shared with other servers may refuse the commit (state_conflict): the
    // call is then run again on the reloaded state, from this copy of its request.
    if (store->kind() != "memory") pc->retry_req = pc->req;
    pc->start = start;
    (*slot)->queue->post_async([this, pc](SerialQueue::Done done) {
        pc->done = std::move(done);
        start_call(pc);
    });
}

// The call's turn on the instance's queue: on the slot's strand (an I/O thread), or on
// a pool thread when the queue has no strand. A call to a live worker runs there
// without blocking; one that needs a sandbox started first goes to the pool.
void Server::Impl::start_call(const std::shared_ptr<ProcessCall>& pc) {
    Slot& s = *pc->slot;
    const bool on_loop = s.queue->strand() != nullptr;
    pc->on_strand = on_loop;
    if (!on_loop || !s.inst) {
        if (!on_loop) return run_on_pool(pc);
        s.queue->pool().submit([this, pc] { run_on_pool(pc); });
        return;
    }
    if (!prepare_call(pc)) return;
    auto began = s.inst->begin(std::move(pc->req), std::move(pc->events), false);
    if (!began) return commit_or_answer(pc, tl::unexpected(began.error()));
    if (!*began) {  // a new sandbox first: that blocks
        s.queue->pool().submit([this, pc] { run_on_pool(pc); });
        return;
    }
    if (auto w = watch_worker(s); !w) {  // cannot watch it here: wait on a pool thread
        spdlog::warn("{}: {}; the call waits on a pool thread", s.key, w.error().message);
        metrics.process_on_pool++;
        pc->on_strand = false;
        s.queue->pool().submit([this, pc] { commit_or_answer(pc, pc->slot->inst->wait()); });
        return;
    }
    metrics.process_on_loop++;
    await_worker(pc);
}

// On a pool thread: the whole call, starting a sandbox first if needed.
void Server::Impl::run_on_pool(const std::shared_ptr<ProcessCall>& pc) {
    Slot& s = *pc->slot;
    pc->on_strand = false;
    if (!s.inst) {
        if (!still_wanted(pc)) return;
        if (auto ok = ensure_instance(s); !ok)
            return commit_or_answer(pc, tl::unexpected(ok.error()));
    }
    if (!prepare_call(pc)) return;
    auto began = s.inst->begin(std::move(pc->req), std::move(pc->events), true);
    if (!began) return commit_or_answer(pc, tl::unexpected(began.error()));
    metrics.process_on_pool++;
    commit_or_answer(pc, s.inst->wait());
}

// False when the call must not run: it was cancelled, the server is shutting down, its
// instance was unloaded (each answered), or nobody is left to answer (dropped).
bool Server::Impl::still_wanted(const std::shared_ptr<ProcessCall>& pc) {
    Slot& s = *pc->slot;
    {
        std::lock_guard lk(pc->call->mu);
        if (pc->call->cancelled) {
            answer_call(pc, tl::unexpected(Error(Errc::cancelled,
                                                 "the call was cancelled before it started")));
            return false;
        }
    }
    if (aborting) {
        answer_call(pc, tl::unexpected(Error(Errc::shutting_down,
                                             "the server shut down before the call started")));
        return false;
    }
    if (s.removed) {
        answer_call(pc, tl::unexpected(not_found(s.component, s.instance_id)));
        return false;
    }
    if (!pc->reply.session->conn->is_open()) {  // nobody to answer: do not run it
        metrics.count("process", "dropped");
        retire_call(pc->reply.session, pc->key);
        pc->done();
        return false;
    }
    return true;
}

// The call's limits and events, once the instance exists; false when it was answered.
bool Server::Impl::prepare_call(const std::shared_ptr<ProcessCall>& pc) {
    if (!still_wanted(pc)) return false;
    Slot& s = *pc->slot;
    if (!pc->call_id.empty() && pc->call_id == s.last_call) {
        // Committed already (its answer was lost, or it ran on a server since gone):
        // answered from the store, not run again.
        runtime::CallOutcome out;
        out.outputs = s.last_outputs;
        out.state = s.inst->state();
        pc->replayed = true;
        answer_call(pc, std::move(out));
        return false;
    }
    if (!pc->limits_asked.empty()) {  // this call's own, on top of the instance's
        auto l = runtime::apply_limits(s.inst->limits(), pc->limits_asked, opts.max_limits,
                                       "params.limits");
        if (!l) {
            answer_call(pc, tl::unexpected(l.error()));
            return false;
        }
        pc->req.limits = *l;
    }
    // The events hold what they use: on the I/O thread they outlive this function.
    runtime::CallEvents& events = pc->events;
    events.on_output = [conn = pc->reply.session->conn, slot = pc->slot, call_id = pc->reply.id,
                        streamed = pc->streamed](std::string_view port, const json::value& data) {
        streamed->store(true, std::memory_order_relaxed);
        conn->send(
            rpc::encode(rpc::make_notification("script_output", {{"actor_id", slot->component},
                                                                 {"instance_id", slot->instance_id},
                                                                 {"port", port},
                                                                 {"data", data},
                                                                 {"timestamp", now_ms()},
                                                                 {"call_id", call_id}})));
    };
    events.on_log = [slot = pc->slot](const runtime::LogLine& l) {
        spdlog::debug("[{}] {}", slot->component, l.text);
    };
    // The worker's pid is registered for cancel just before the call is sent, after any
    // restart inside Instance::begin; a cancel or abort that came while a sandbox was
    // starting found nothing to kill, and stops the call there, unsent.
    events.on_start = [call = pc->call, slot = pc->slot](pid_t pid) {
        std::lock_guard lk(call->mu);
        if (call->cancelled || call->aborted) return false;
        call->running = true;
        call->pid = pid;
        call->worker_serial = slot->inst->worker_serial();  // inside the call's job
        std::lock_guard lk2(slot->run_mu);
        slot->running = call;
        return true;
    };
    s.set_state(SlotState::busy);
    return true;
}

// The call has ended (it ran, or failed to begin): a changed state goes to the store,
// anything else is answered.
void Server::Impl::commit_or_answer(const std::shared_ptr<ProcessCall>& pc,
                                    Result<runtime::CallOutcome> r) {
    Slot& s = *pc->slot;
    CallState& call = *pc->call;
    bool cancelled, aborted, ran;
    std::uint64_t serial;
    {
        std::lock_guard lk(call.mu);
        ran = call.running;
        serial = call.worker_serial;
        call.running = false;
        call.pid = -1;
        cancelled = call.cancelled;
        aborted = call.aborted;
        std::lock_guard lk2(s.run_mu);
        if (s.running == pc->call) s.running.reset();
    }
    if (r && r->new_worker) {
        s.worker_starts++;
        note_sandbox_start(nullptr);
    } else if (!r) {
        note_sandbox_start(&r.error());
    }
    if (!r && ran && (!s.inst || s.inst->worker_serial() != serial))
        metrics.count_kill(r.error(), cancelled, aborted);
    if (s.inst) s.pid = s.inst->worker_pid();
    s.set_state(SlotState::idle);
    if (r && r->state_changed()) return commit_state(pc, std::move(*r));
    if (r) {
        // Nothing to commit.
    } else if (aborted) {
        r = tl::unexpected(
            Error(Errc::shutting_down,
                  ran ? "the server shut down during the call; its worker was stopped"
                      : "the server shut down before the call started"));
    } else if (cancelled) {
        r = tl::unexpected(
            Error(Errc::cancelled, ran ? "the call was cancelled; its sandbox was stopped and the "
                                         "next call gets a new one with the last committed state"
                                       : "the call was cancelled before it started"));
    }
    answer_call(pc, r);
}

// The call succeeded and changed the state: it is answered once the store committed
// it. A commit that fails fails the call and drops the instance's worker, whose state
// the store does not hold: the next call starts a new one from what the store holds.
void Server::Impl::commit_state(const std::shared_ptr<ProcessCall>& pc, runtime::CallOutcome out) {
    Slot& s = *pc->slot;
    runtime::StateCommit c;
    c.ref = s.ref();
    c.base_version = s.version;
    c.state = std::move(out.state);
    pc->state_in_instance = true;
    c.expires = s.inst->expires();
    c.changed = std::move(out.changed);
    c.removed = std::move(out.removed);
    c.call_id = pc->call_id;
    if (!pc->call_id.empty()) c.outputs = out.outputs;
    if (store->commits_inline()) {
        store->commit(std::move(c), [this, pc, &out](Result<std::uint64_t> v) {
            answer_or_rerun(pc, std::move(out), std::move(v));
        });
        return;
    }
    auto shared = std::make_shared<runtime::CallOutcome>(std::move(out));
    store->commit(std::move(c), [this, pc, shared](Result<std::uint64_t> v) {
        // On the store's thread. A commit that landed is answered from here, with no
        // hop back to the slot's strand first: the answer is queued on its connection's
        // strand either way, what answer_or_rerun() touches belongs to this call's job
        // until pc->done(), and answer_call() posts the idle watch as a job of the slot's
        // queue.
        if (v) {
            pc->on_strand = false;
            answer_or_rerun(pc, std::move(*shared), std::move(v));
            return;
        }
        // A failed one goes back to where the call runs: it drops the worker and its
        // watch, which belong to that strand.
        auto next = [this, pc, shared, v = std::move(v)]() mutable {
            answer_or_rerun(pc, std::move(*shared), std::move(v));
        };
        if (pc->on_strand)
            pc->slot->queue->strand()->post(std::move(next));
        else
            pc->slot->queue->pool().submit(std::move(next));
    });
}

// The store answered the commit: the call is answered, or run again on the state another
// server committed meanwhile.
void Server::Impl::answer_or_rerun(const std::shared_ptr<ProcessCall>& pc, runtime::CallOutcome out,
                                   Result<std::uint64_t> v) {
    Slot& s = *pc->slot;
    if (!v) {
        s.watch.reset();
        s.inst.reset();
        s.pid = -1;
        s.set_state(SlotState::down);
        // Another server committed since this instance read the store. Nothing of the
        // call was committed; when nothing of it was streamed either, it runs again on
        // a new worker started from what the store holds now (which answers it from
        // the store if that server committed this very call), still in its turn on
        // the instance's queue.
        if (v.error().code == Errc::state_conflict && pc->retry_req &&
            !pc->streamed->load(std::memory_order_relaxed) &&
            pc->conflict_retries < limits::kMaxConflictRetries) {
            pc->conflict_retries++;
            metrics.conflict_retries++;
            pc->req = *pc->retry_req;
            pc->events = {};
            pc->state_in_instance = false;
            s.queue->pool().submit([this, pc] { run_on_pool(pc); });
            return;
        }
        return answer_call(pc, tl::unexpected(v.error()));
    }
    s.version = *v;
    s.last_call = pc->call_id;
    if (!pc->call_id.empty()) s.last_outputs = out.outputs;
#ifdef SANDFLOW_FAULT_HOOKS
    if (crash_after_commits.load() > 0 && --crash_after_commits == 0) ::raise(SIGKILL);
#endif
    answer_call(pc, std::move(out));
}

// Answers the call and lets the instance's next job start.
void Server::Impl::answer_call(const std::shared_ptr<ProcessCall>& pc,
                               const Result<runtime::CallOutcome>& r) {
    Slot& s = *pc->slot;
    const double secs = std::chrono::duration<double>(Clock::now() - pc->start).count();
    metrics.latency.observe(secs);
    s.calls++;
    if (r) {
        metrics.count("process", "ok");
        const json::object& state = pc->state_in_instance && s.inst ? s.inst->state() : r->state;
        json::object result{{"outputs", r->outputs},
                            {"state", state},
                            {"duration_us", r->duration.count()},
                            {"instance_id", s.instance_id}};
        if (pc->replayed) result["replayed"] = true;
        pc->reply.ok(std::move(result));
    } else {
        s.errors++;
        metrics.count_error("process", r.error());
        pc->reply.err(r.error());
    }
    retire_call(pc->reply.session, pc->key);
    if (pc->on_strand)
        watch_between_calls(pc->slot);
    else
        watch_between_calls_later(pc->slot);
    pc->done();
}

}  // namespace sandflow::server
