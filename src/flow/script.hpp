// Script actors as graph nodes: where they are found, and what runs them.
//
// A ScriptHost opens one ScriptRunner per node (one sandboxed instance per node, never
// shared). Two hosts exist: the embedded runtime (runtime::Instance on a sandbox backend,
// in this process) and a remote runtime server reached through the C++ client
// (flow/remote.hpp). The network uses only this interface, so both give the same results.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "actor/metadata.hpp"
#include "actor/package_sets.hpp"
#include "core/error.hpp"
#include "core/json.hpp"

namespace sandflow::sandbox {
class Backend;
}
namespace sandflow::runtime {
class StateStore;
}

namespace sandflow::flow {

struct ScriptActor {
    std::filesystem::path file;
    actor::ActorMetadata metadata;
    std::string source;
};

// Component name -> script, discovered under some folders.
class ScriptCatalog {
  public:
    // Every .py/.js/.cjs file directly in each folder, and *.actor.py / *.actor.js one level
    // below, whose metadata reads; files without a declaration are skipped (a helper module
    // is not an actor). At most limits::kMaxDiscoveredFiles entries are looked at. When two
    // files declare one component, the first folder wins and a warning is logged.
    static ScriptCatalog discover(const std::vector<std::filesystem::path>& dirs);

    // Adds one script (an error when its metadata does not read).
    Result<void> add_file(const std::filesystem::path& file);
    const ScriptActor* find(std::string_view component) const;
    std::vector<std::string> names() const;
    const std::vector<std::filesystem::path>& dirs() const { return dirs_; }

  private:
    std::map<std::string, ScriptActor, std::less<>> actors_;
    std::vector<std::filesystem::path> dirs_;
};

using OutputSink = std::function<void(std::string_view port, json::value data)>;
using LogSink = std::function<void(std::string_view text)>;
using CallDone = std::function<void(Result<json::object> outputs)>;

class ScriptRunner {
  public:
    virtual ~ScriptRunner() = default;
    // One call; blocks until it ends. Streamed outputs reach on_output as they arrive, on
    // the calling thread or another one, before call() returns; on_output may block (that
    // is how back-pressure reaches the sandbox). Returns the outputs the script returned.
    virtual Result<json::object> call(json::object inputs, const json::object& config,
                                      const OutputSink& on_output) = 0;

    // How many calls start() takes at once; 1: the network uses call(), one at a time.
    virtual std::size_t max_in_flight() const { return 1; }
    // Starts a call without waiting for it (runners whose max_in_flight() > 1). The calls
    // run one at a time, in the order started. A call's streamed outputs reach on_output,
    // then on_done runs once with its result, on any thread (the one that called start()
    // when it fails at once); neither may block. This default runs call() here.
    virtual void start(json::object inputs, const json::object& config, OutputSink on_output,
                       CallDone on_done) {
        on_done(call(std::move(inputs), config, on_output));
    }
    // Asks the calls in flight to stop: each then ends, soon, with an error. Nothing where
    // a call cannot be stopped from outside (the network then waits for it).
    virtual void cancel_all() {}
    // Where start() is cheapest to call from and on_output / on_done run (a client's I/O
    // thread): the network runs the node's activations there through this. Empty: on the
    // network's own pool.
    using Executor = std::function<void(std::function<void()> job)>;
    virtual Executor executor() const { return {}; }
};

class ScriptHost {
  public:
    virtual ~ScriptHost() = default;
    virtual std::string_view name() const = 0;  // "embedded (none)", "ws://..."
    // Loads the script for one node; load errors (a syntax error) surface here.
    virtual Result<std::unique_ptr<ScriptRunner>> open(const ScriptActor& actor,
                                                       std::string_view node_id,
                                                       LogSink on_log) = 0;
};

// Runs every node in this process on `backend` (which must outlive the host).
// `call_timeout` 0: each actor's declared timeout_ms, else the default (30 s).
// `store` (none: state lives in the instances only, as in memory): each node's instance is
// (component, node id) in it; it starts on what the store holds, and each call that
// changed the state commits before its outputs go on (compare-and-set, as `serve` does).
// A commit that fails fails the call, and the node starts again from what the store
// holds. The state stays in the store after the run. Scripts import from `packages`' sets
// (none when null).
std::unique_ptr<ScriptHost> embedded_host(
    sandbox::Backend& backend, std::chrono::milliseconds call_timeout = {},
    std::shared_ptr<runtime::StateStore> store = {},
    std::shared_ptr<const actor::PackageCatalog> packages = {});

}  // namespace sandflow::flow
