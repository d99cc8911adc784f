// Script nodes on a remote Sandflow runtime server, through the C++ client
// (include/sandflow/client.hpp). Each node gets its own connection and its own instance
// (instance_id = the node id), loaded from the script's source sent inline, so the
// server needs no access to the graph's files. A node's streamed outputs arrive on its
// connection's I/O thread; blocking there for back-pressure holds up only that node.
#pragma once

#include <memory>
#include <string>

#include "flow/script.hpp"

namespace sandflow::flow {

struct RemoteOptions {
    std::string url;    // ws://HOST:PORT
    std::string token;  // sent as a bearer token when not empty
    // Wall clock per call; 0: the one each actor declares (limits.timeout_ms), else the
    // server's default.
    std::chrono::milliseconds call_timeout{0};
};

std::unique_ptr<ScriptHost> remote_host(RemoteOptions options);

}  // namespace sandflow::flow
