// `sandflow call` against a `sandflow serve` that each test starts on 127.0.0.1:0: what
// it prints (notifications as they arrive, then the result or the error) and its exit
// statuses (docs/errors.md: 0 ok, 1 script raised, 2 bad params, 3 connection, sandbox
// or limit error, 6 unauthorized).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "core/json.hpp"
#include "support/server_support.hpp"
#include "support/test_support.hpp"

using namespace sandflow;

namespace {

using sandflow::testing::json_lines;
using sandflow::testing::kExamples;
using sandflow::testing::run_cli;
using sandflow::testing::ServerProcess;

// `sandflow call --url URL ARGS...`
sandflow::testing::CliRun call(const ServerProcess& srv, std::vector<std::string> args) {
    args.insert(args.begin(), {"call", "--url", srv.url()});
    return run_cli(args);
}

// The one {"error": ...} line of a failed call.
json::object error_line(const sandflow::testing::CliRun& r) {
    auto lines = json_lines(r.out);
    EXPECT_EQ(lines.size(), 1u) << r.out;
    if (lines.size() != 1 || !lines[0].contains("error")) return {};
    return lines[0].at("error").as_object();
}

}  // namespace

TEST(CallCli, ProcessPrintsTheScriptOutputThenTheResult) {
    ServerProcess srv({"--actors", kExamples.string()});
    auto r = call(srv, {"process", R"({"actor_id":"double","payload":{"input":21}})"});
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    auto lines = json_lines(r.out);
    ASSERT_EQ(lines.size(), 2u) << r.out;
    EXPECT_EQ(lines[0].at("method"), "script_output");
    const auto& out = lines[0].at("params").as_object();
    EXPECT_EQ(out.at("actor_id"), "double");
    EXPECT_EQ(out.at("instance_id"), "default");
    EXPECT_EQ(out.at("port"), "output");
    EXPECT_EQ(out.at("data"), 42);
    EXPECT_GT(out.at("timestamp").as_int64(), 0);
    EXPECT_TRUE(out.contains("call_id"));
    const auto& result = lines[1].at("result").as_object();
    EXPECT_EQ(result.at("outputs"), (json::object{{"status", "completed"}}));
    EXPECT_EQ(result.at("instance_id"), "default");
    EXPECT_TRUE(result.at("duration_us").is_int64());

    // Methods without notifications print the result line only.
    auto ping = call(srv, {"ping"});
    ASSERT_EQ(ping.status, 0) << ping.err;
    auto pl = json_lines(ping.out);
    ASSERT_EQ(pl.size(), 1u) << ping.out;
    EXPECT_EQ(pl[0].at("result").at("pong"), true);
}

TEST(CallCli, UnknownMethodOrBadParamsExitTwoWithAMessage) {
    ServerProcess srv({"--actors", kExamples.string()});

    // The server's -32601, printed and explained.
    auto unknown = call(srv, {"frobnicate", "{}"});
    EXPECT_EQ(unknown.status, 2) << unknown.err;
    EXPECT_NE(unknown.err.find("method 'frobnicate' not found"), std::string::npos) << unknown.err;
    const auto e = error_line(unknown);
    EXPECT_EQ(e.at("code"), -32601);
    EXPECT_EQ(e.at("data").at("reason"), "method_not_found");

    // PARAMS that are not JSON, or not an object: refused before connecting, nothing on
    // stdout.
    auto bad_json = call(srv, {"process", R"({"actor_id": "double",)"});
    EXPECT_EQ(bad_json.status, 2);
    EXPECT_TRUE(bad_json.out.empty()) << bad_json.out;
    EXPECT_NE(bad_json.err.find("invalid JSON in PARAMS at line 1, column 23"), std::string::npos)
        << bad_json.err;
    // cancel needs the connection that sent the call: refused, with what to do instead.
    auto cancel = call(srv, {"cancel", R"({"id": 1})"});
    EXPECT_EQ(cancel.status, 2);
    EXPECT_NE(cancel.err.find("--timeout"), std::string::npos) << cancel.err;
    auto scalar = call(srv, {"process", "42"});
    EXPECT_EQ(scalar.status, 2);
    EXPECT_TRUE(scalar.out.empty()) << scalar.out;
    EXPECT_NE(scalar.err.find("PARAMS must be a JSON object"), std::string::npos) << scalar.err;

    // Params of the wrong type, refused by the server (-32602).
    auto wrong = call(srv, {"process", R"({"actor_id":"double","payload":[1]})"});
    EXPECT_EQ(wrong.status, 2) << wrong.err;
    EXPECT_EQ(error_line(wrong).at("code"), -32602);
    EXPECT_NE(wrong.err.find("payload"), std::string::npos) << wrong.err;

    // No METHOD at all: a usage error.
    auto none = run_cli({"call"});
    EXPECT_EQ(none.status, 2);
    EXPECT_NE(none.err.find("METHOD"), std::string::npos) << none.err;
}

TEST(CallCli, CallErrorsExitWithTheirStatus) {
    ServerProcess srv({"--actors", kExamples.string()});

    // No such actor: a bad parameter.
    auto missing = call(srv, {"process", R"({"actor_id":"nobody","payload":{}})"});
    EXPECT_EQ(missing.status, 2) << missing.err;
    EXPECT_NE(missing.err.find("actor 'nobody' is not loaded"), std::string::npos) << missing.err;
    const auto e = error_line(missing);
    EXPECT_EQ(e.at("code"), -32001);
    EXPECT_EQ(e.at("data").at("reason"), "actor_not_found");
    EXPECT_EQ(e.at("data").at("actor_id"), "nobody");

    // The script raised: 1, with its traceback on stdout.
    auto raised = call(srv, {"process", R"({"actor_id":"validate_order",)"
                                        R"("payload":{"order":{"id":"A7","quantity":0}}})"});
    EXPECT_EQ(raised.status, 1) << raised.err;
    const auto s = error_line(raised);
    EXPECT_EQ(s.at("code"), -32002);
    EXPECT_EQ(s.at("data").at("type"), "ValueError");
    EXPECT_TRUE(s.at("data")
                    .at("traceback")
                    .as_array()
                    .back()
                    .at("file")
                    .as_string()
                    .ends_with("validate_order.actor.py"));
    EXPECT_NE(raised.err.find("ValueError"), std::string::npos) << raised.err;

    // The server is still there for the next call.
    EXPECT_EQ(call(srv, {"ping"}).status, 0);
}

TEST(CallCli, ConnectionErrorsExitThree) {
    // A port that is bound but not listening: the connection is refused.
    const int hold = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(hold, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(hold, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ASSERT_EQ(::getsockname(hold, reinterpret_cast<sockaddr*>(&a), &len), 0);
    const std::string url = "ws://127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    auto refused = run_cli({"call", "--url", url, "ping"});
    ::close(hold);
    EXPECT_EQ(refused.status, 3) << refused.err;
    EXPECT_TRUE(refused.out.empty()) << refused.out;
    EXPECT_NE(refused.err.find("sandflow: error:"), std::string::npos) << refused.err;

    // A server with a token: without it the upgrade is refused; with it, served.
    ServerProcess srv({"--actors", kExamples.string(), "--token", "s3cret"});
    auto no_token = call(srv, {"ping"});
    EXPECT_EQ(no_token.status, 6) << no_token.err;
    EXPECT_NE(no_token.err.find("token"), std::string::npos) << no_token.err;
    auto with_token = call(srv, {"--token", "s3cret", "ping"});
    EXPECT_EQ(with_token.status, 0) << with_token.err;
}
