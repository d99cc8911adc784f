// A `process` call on its way through its instance's queue (call.cpp, worker_watch.cpp).
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "runtime/actor_limits.hpp"
#include "runtime/worker.hpp"
#include "server/executor.hpp"
#include "server/registry.hpp"
#include "server/session.hpp"
#include "server/shared_state.hpp"

namespace sandflow::server {

struct ProcessCall {
    Reply reply;
    std::shared_ptr<Slot> slot;
    std::shared_ptr<CallState> call;
    std::string key;  // in the session's calls
    runtime::CallRequest req;
    runtime::LimitOverrides limits_asked;
    std::string call_id;  // params.call_id: a replay of the last committed call is a no-op
    Clock::time_point start;
    runtime::CallEvents events;
    SerialQueue::Done done;  // the queue's next job may start
    bool on_strand = false;  // the call runs on the slot's strand (else on the pool)
    bool replayed = false;   // answered from the store (call_id), not run
    // For a run again after a state_conflict (answer_or_rerun()): the request as received,
    // the runs so far, and whether an output of this call reached the client (then it is
    // not run again here: the client would see its outputs twice).
    std::optional<runtime::CallRequest> retry_req;
    int conflict_retries = 0;
    std::shared_ptr<std::atomic<bool>> streamed = std::make_shared<std::atomic<bool>>(false);
    // The outcome's state was moved into the commit: the answer reads the instance's
    // (the same object, and the instance keeps it until the call's job ends).
    bool state_in_instance = false;
};

}  // namespace sandflow::server
