// The registry: actor scripts registered under their component names, and their instances
// (slots), each with its own worker and serial queue. The registry only keeps them; starting
// and stopping instances is registry.cpp's part of the server's state (shared_state.hpp).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/json.hpp"
#include "rpc/event_loop.hpp"
#include "runtime/actor_limits.hpp"
#include "runtime/instance.hpp"
#include "runtime/state/store.hpp"
#include "server/executor.hpp"
#include "server/session.hpp"

namespace sandflow::server {

// A script registered under its component name.
struct ActorEntry {
    std::string component;
    runtime::InstanceSpec spec;  // metadata, source, filename (no state, no log sink)
    std::string origin;          // the real file path, or "inline"
};

enum class SlotState : int { starting, idle, busy, down };

// One instance: its worker lives in `inst`, touched only by jobs on `queue`.
struct Slot {
    std::string component, instance_id, key;
    // The committed state's version in the store and the call that made it (jobs only):
    // a commit is made from this version, and a call replayed with that call's id is
    // answered from last_outputs without running again.
    std::uint64_t version = 0;
    std::string last_call;
    json::object last_outputs;
    runtime::InstanceRef ref() const { return {component, instance_id}; }
    std::shared_ptr<const ActorEntry> actor;  // the code the instance runs (jobs only)
    std::unique_ptr<runtime::Instance> inst;  // jobs only
    std::shared_ptr<SerialQueue> queue;
    std::atomic<bool> removed{false};
    std::atomic<bool> dropped{false};  // the drop job ran: no worker is left
    std::atomic<pid_t> pid{-1};
    std::atomic<int> state{static_cast<int>(SlotState::down)};
    std::atomic<std::uint64_t> calls{0}, errors{0}, worker_starts{0};
    std::optional<runtime::ActorLimits> limits;  // from load's params.limits (jobs only)
    // Watches inst's worker, during calls run on the strand and between calls (jobs only);
    // watch_serial is the worker it watches (Worker::serial).
    std::unique_ptr<rpc::FdWatch> watch;
    std::uint64_t watch_serial = 0;
    // Workers lost between calls (killed for what they did then, or found dead), and why
    // the last one was.
    std::atomic<std::uint64_t> lost_between_calls{0};
    std::mutex loss_mu;
    std::string last_loss;  // under loss_mu
    // The call running on the worker, whoever sent it (a notification, a connection since
    // closed): a shutdown stops it through here. Lock order: CallState::mu, then run_mu.
    std::mutex run_mu;
    std::shared_ptr<CallState> running;  // under run_mu

    void set_state(SlotState s) { state = static_cast<int>(s); }
};

class Registry {
  public:
    Registry(std::size_t max_actors, std::size_t max_instances)
        : max_actors_(max_actors), max_instances_(max_instances) {}

    // Registers `entry` under its component. The same script from the same origin again
    // returns the entry already registered (its instances keep running); over max_actors
    // new components are refused (limit_exceeded).
    Result<std::shared_ptr<const ActorEntry>> add(std::shared_ptr<const ActorEntry> entry);
    std::shared_ptr<const ActorEntry> actor(const std::string& component) const;
    std::vector<std::string> actor_names() const;
    // The actor and its instances, seen at one time; a null actor when it is not registered.
    std::shared_ptr<const ActorEntry> actor_with_slots(
        const std::string& component, std::vector<std::shared_ptr<Slot>>& out) const;

    // The slot of (component, instance_id). Without it, and when `create`, one is made with
    // the queue `make_queue` gives, if the actor exists and max_instances allows.
    Result<std::shared_ptr<Slot>> slot_for(
        const std::string& component, const std::string& instance_id, bool create,
        const std::function<std::shared_ptr<SerialQueue>()>& make_queue);
    // Takes the slots of one instance of `component` (or all of them, and the actor itself,
    // when instance_id is empty) out of the registry; not_found when there is none to take.
    Result<std::vector<std::shared_ptr<Slot>>> remove(const std::string& component,
                                                      const std::string& instance_id);
    std::vector<std::shared_ptr<Slot>> slots() const;
    std::vector<std::shared_ptr<Slot>> take_all_slots();

    struct Counts {
        std::size_t actors = 0, instances = 0;
        std::size_t busy = 0, idle = 0, starting = 0, down = 0;  // by SlotState
    };
    Counts counts() const;

  private:
    const std::size_t max_actors_, max_instances_;
    mutable std::mutex mu_;
    std::map<std::string, std::shared_ptr<const ActorEntry>> actors_;
    std::map<std::string, std::shared_ptr<Slot>> slots_;  // by key: component/instance_id
};

}  // namespace sandflow::server
