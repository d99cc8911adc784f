// Script nodes on remote Sandflow runtime servers, through the C++ client
// (include/sandflow/client.hpp). Each node gets its own connections and its own instance
// (instance_id = the node id), loaded from the script's source sent inline, so the
// servers need no access to the graph's files. A node's streamed outputs arrive on its
// connection's I/O thread; blocking there for back-pressure holds up only that node.
// With several servers (on one shared state store), each node's instance goes to one of
// them and moves to another when that one is lost, its unanswered call sent again with
// the same call_id (client::FailoverClient); a node makes one call at a time, so each
// message's state update is applied once.
#pragma once

#include <memory>
#include <string>

#include "flow/script.hpp"

namespace sandflow::flow {

struct RemoteOptions {
    std::string url;    // ws://HOST:PORT, or several separated by commas
    std::string token;  // sent as a bearer token when not empty
    // Wall clock per call; 0: the one each actor declares (limits.timeout_ms), else the
    // server's default.
    std::chrono::milliseconds call_timeout{0};
};

std::unique_ptr<ScriptHost> remote_host(RemoteOptions options);

}  // namespace sandflow::flow
