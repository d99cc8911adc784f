// Sandflow's flow engine, public API (docs/flow.md): native components and their registry.
//
// A native component is C++ code that runs as a graph node beside sandboxed script
// actors. The network gives each node its own Component object (one per node, not per
// component name), and calls it for one packet at a time, or, when the spec sets
// await_all_inports, once it holds one packet on every connected inport. A component
// never blocks: to wait, it asks for a delayed send; to produce many packets from one
// input (a generator), it sends a few and asks to be called again, so that back-pressure
// from slow consumers reaches it.
//
//   flow::Registry reg = flow::Registry::standard();
//   reg.add({.name = "upper", .inports = {{"in"}}, .outports = {{"out"}},
//            .make = [](const json::object&) -> Result<std::unique_ptr<flow::Component>> {
//                return std::make_unique<Upper>();
//            }});
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "core/error.hpp"

namespace sandflow::flow {

namespace json = boost::json;

// A declared port: its name and Reflow port type tag (any, flow, boolean, integer, float,
// string, object, array, stream, option).
struct PortSpec {
    std::string name;
    std::string type = "any";
};

// What one activation of a native component sees and can do. Valid only during the call.
class Context {
  public:
    virtual ~Context() = default;
    virtual std::string_view node_id() const = 0;
    // The node's config: its `metadata` object in the graph.
    virtual const json::object& config() const = 0;
    // The inport of this packet and the packet itself (moving it out is allowed). Empty
    // port and null for an activation without input (again(), flush()).
    virtual std::string_view port() const = 0;
    virtual json::value& value() = 0;
    // With await_all_inports: one packet per connected inport, by port name.
    virtual json::object& inputs() = 0;
    // Sends a packet on an outport (it must be declared, or be `error`); every connection
    // from that port gets its own copy.
    virtual Result<void> send(std::string_view port, json::value v) = 0;
    // Sends after a delay, without blocking the activation.
    virtual Result<void> send_after(std::string_view port, json::value v,
                                    std::chrono::milliseconds delay) = 0;
    // Calls the component again, without input, when its consumers have room.
    virtual void again() = 0;
    // A log line on stderr, tagged with the node.
    virtual void log(std::string_view text) = 0;
};

class Component {
  public:
    virtual ~Component() = default;
    // One activation. An error goes to the node's `error` outport when it is connected,
    // otherwise it stops the run.
    virtual Result<void> process(Context& ctx) = 0;
    // Called once the network is otherwise idle (nothing queued or in flight), so that a
    // component holding packets back (join) can send what it has. The run continues while
    // flushes send packets.
    virtual Result<void> flush(Context& /*ctx*/) { return {}; }
};

struct ComponentSpec {
    std::string name;
    std::string description;
    std::vector<PortSpec> inports;
    std::vector<PortSpec> outports;
    bool await_all_inports = false;
    // Makes the node's component from its config; an error fails the graph's validation.
    std::function<Result<std::unique_ptr<Component>>(const json::object& config)> make;
};

class Registry {
  public:
    // The standard library: passthrough, log, collect, split, join, counter, delay, timer,
    // filter, merge, zip, range (docs/flow.md).
    static Registry standard();

    // Adds or replaces a component.
    void add(ComponentSpec spec);
    const ComponentSpec* find(std::string_view name) const;
    std::vector<std::string> names() const;

  private:
    std::map<std::string, ComponentSpec, std::less<>> specs_;
};

}  // namespace sandflow::flow
