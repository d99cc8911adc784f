// The short names Beast's own examples use, for the two files that speak Boost.Beast: the
// server (ws_server.cpp, in sandflow::rpc) and the client library (ws_client.cpp, in
// sandflow::client); hence at namespace sandflow's scope. Include it from those .cpp files
// only, never from a header.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

namespace sandflow {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

}  // namespace sandflow
