// The JSON-RPC 2.0 codec, the transport's pure helpers and the --actors path rules. No
// sockets, no processes.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "actor/script_limits.hpp"
#include "cli/exit_status.hpp"
#include "core/limits.hpp"
#include "rpc/jsonrpc.hpp"
#include "rpc/rpc_limits.hpp"
#include "rpc/transport.hpp"
#include "server/actor_paths.hpp"

using namespace sandflow;
namespace fs = std::filesystem;

namespace {

json::object only_error(const rpc::Decoded& d) {
    EXPECT_EQ(d.entries.size(), 1u);
    const auto* e = std::get_if<json::object>(&d.entries.at(0));
    EXPECT_NE(e, nullptr);
    return e ? *e : json::object{};
}

std::int64_t code_of(const json::object& response) {
    return response.at("error").at("code").as_int64();
}

}  // namespace

TEST(JsonRpc, DecodesRequestsWithStringAndNumberIds) {
    auto d = rpc::decode(R"({"jsonrpc":"2.0","id":"abc","method":"list","params":{}})");
    ASSERT_FALSE(d.batch);
    auto& r = std::get<rpc::Request>(d.entries.at(0));
    EXPECT_EQ(r.id, json::value("abc"));
    EXPECT_EQ(r.method, "list");
    EXPECT_FALSE(r.is_notification);

    d = rpc::decode(R"({"jsonrpc":"2.0","id":7,"method":"ping"})");
    auto& r2 = std::get<rpc::Request>(d.entries.at(0));
    EXPECT_EQ(r2.id, json::value(7));
    EXPECT_TRUE(r2.params.is_null());

    d = rpc::decode(R"({"jsonrpc":"2.0","method":"ping"})");
    EXPECT_TRUE(std::get<rpc::Request>(d.entries.at(0)).is_notification);
}

TEST(JsonRpc, ParseErrorHasNullId) {
    auto e = only_error(rpc::decode(R"({"jsonrpc":"2.0","id":1,"method":)"));
    EXPECT_EQ(code_of(e), rpc::kParseError);
    EXPECT_TRUE(e.at("id").is_null());
    EXPECT_EQ(e.at("jsonrpc"), "2.0");
}

TEST(JsonRpc, InvalidRequestsKeepTheirIdWhenItIsValid) {
    auto e = only_error(rpc::decode(R"({"jsonrpc":"1.0","id":"x","method":"ping"})"));
    EXPECT_EQ(code_of(e), rpc::kInvalidRequest);
    EXPECT_EQ(e.at("id"), "x");

    e = only_error(rpc::decode(R"({"jsonrpc":"2.0","id":3,"method":42})"));
    EXPECT_EQ(code_of(e), rpc::kInvalidRequest);
    EXPECT_EQ(e.at("id"), 3);

    e = only_error(rpc::decode(R"({"jsonrpc":"2.0","id":3,"method":"p","params":"str"})"));
    EXPECT_EQ(code_of(e), rpc::kInvalidRequest);

    e = only_error(rpc::decode(R"({"jsonrpc":"2.0","id":{"a":1},"method":"ping"})"));
    EXPECT_EQ(code_of(e), rpc::kInvalidRequest);
    EXPECT_TRUE(e.at("id").is_null());

    e = only_error(rpc::decode(R"("just a string")"));
    EXPECT_EQ(code_of(e), rpc::kInvalidRequest);

    e = only_error(rpc::decode(R"({"jsonrpc":"2.0","id":1.5,"method":"ping"})"));
    EXPECT_EQ(code_of(e), rpc::kInvalidRequest);

    const std::string long_method(limits::kMaxRpcMethodBytes + 1, 'm');
    e = only_error(rpc::decode(R"({"jsonrpc":"2.0","id":1,"method":")" + long_method + "\"}"));
    EXPECT_EQ(code_of(e), rpc::kInvalidRequest);
}

TEST(JsonRpc, Batches) {
    auto d = rpc::decode(
        R"([{"jsonrpc":"2.0","id":1,"method":"ping"}, 5, {"jsonrpc":"2.0","method":"x"}])");
    ASSERT_TRUE(d.batch);
    ASSERT_EQ(d.entries.size(), 3u);
    EXPECT_TRUE(std::holds_alternative<rpc::Request>(d.entries[0]));
    EXPECT_EQ(code_of(std::get<json::object>(d.entries[1])), rpc::kInvalidRequest);
    EXPECT_TRUE(std::get<rpc::Request>(d.entries[2]).is_notification);

    auto e = only_error(rpc::decode("[]"));
    EXPECT_EQ(code_of(e), rpc::kInvalidRequest);

    std::string big = "[";
    for (std::size_t i = 0; i <= limits::kMaxRpcBatch; ++i)
        big += std::string(i ? "," : "") + R"({"jsonrpc":"2.0","id":1,"method":"ping"})";
    e = only_error(rpc::decode(big + "]"));
    EXPECT_EQ(code_of(e), static_cast<int>(rpc::AppCode::limit_exceeded));
    EXPECT_EQ(e.at("error").at("data").at("limit"), "kMaxRpcBatch");
}

TEST(JsonRpc, LimitsOnSizeAndDepth) {
    auto e = only_error(rpc::decode(R"({"jsonrpc":"2.0","id":1,"method":"ping"})", 10));
    EXPECT_EQ(code_of(e), static_cast<int>(rpc::AppCode::limit_exceeded));
    EXPECT_EQ(e.at("error").at("data").at("limit"), "kMaxRpcMessageBytes");

    std::string deep(limits::kMaxRpcDepth + 5, '[');
    deep += std::string(limits::kMaxRpcDepth + 5, ']');
    e = only_error(rpc::decode(deep));
    EXPECT_EQ(code_of(e), static_cast<int>(rpc::AppCode::limit_exceeded));
    EXPECT_EQ(e.at("error").at("data").at("limit"), "kMaxRpcDepth");
}

// Every Errc goes to the wire and back to itself, through the encoded text, with its
// reason; an error's own finer reason survives.
TEST(JsonRpc, EveryCodeRoundTrips) {
    for (Errc c : kAllErrcs) {
        const auto name = std::string(errc_name(c));
        EXPECT_EQ(errc_from_name(name), c) << name;
        const auto sent = rpc::to_rpc_error(Error(c, "m", {{"detail", 1}}));
        EXPECT_EQ(sent.data.at("errc").as_string(), name);
        EXPECT_EQ(sent.data.at("reason").as_string(), rpc::wire_code(c).reason) << name;
        auto in = rpc::decode_incoming(rpc::encode(rpc::make_error(7, sent)));
        ASSERT_TRUE(in) << in.error().message;
        const auto& r = std::get<rpc::Response>(in->at(0));
        const Error back = rpc::from_rpc_error(r.error.code, r.error.message, r.error.data);
        EXPECT_EQ(back.code, c) << name;
        EXPECT_EQ(back.data.at("detail"), 1);
        EXPECT_EQ(back.data.at("rpc_code"), rpc::wire_code(c).code);
    }
    const auto fine =
        rpc::to_rpc_error(Error(Errc::invalid_argument, "m", {{"reason", "outside_roots"}}));
    EXPECT_EQ(fine.data.at("reason"), "outside_roots");
    // A server that names no errc: the code alone, where one code has it.
    EXPECT_EQ(rpc::from_rpc_error(-32007, "c", {}).code, Errc::cancelled);
    EXPECT_EQ(rpc::from_rpc_error(-32603, "i", {}).code, Errc::internal);
    EXPECT_EQ(rpc::from_rpc_error(-32603, "i", {{"errc", "io"}}).code, Errc::io);
    EXPECT_EQ(rpc::from_rpc_error(rpc::kParseError, "p", {}).code, Errc::invalid_argument);
    EXPECT_EQ(rpc::from_rpc_error(-31999, "?", {{"errc", "timeout"}}).code, Errc::internal);
}

// docs/errors.md's table has one row per Errc, and each row's JSON-RPC code, reason and
// exit status are the code's: adding an Errc without its row fails here.
TEST(ErrorsDoc, OneRowPerCodeMatchingTheCode) {
    std::ifstream f(fs::path(SANDFLOW_SOURCE_DIR) / "docs" / "errors.md");
    ASSERT_TRUE(f) << "cannot read docs/errors.md";
    auto cells = [](const std::string& line) {
        std::vector<std::string> out;
        std::size_t at = 1;
        while (at < line.size()) {
            const std::size_t end = line.find('|', at);
            if (end == std::string::npos) break;
            std::string cell = line.substr(at, end - at);
            cell.erase(0, cell.find_first_not_of(' '));
            cell.erase(cell.find_last_not_of(' ') + 1);
            if (cell.size() >= 2 && cell.front() == '`' && cell.back() == '`')
                cell = cell.substr(1, cell.size() - 2);
            out.push_back(cell);
            at = end + 1;
        }
        return out;
    };
    std::map<std::string, std::vector<std::string>> rows;
    bool in_table = false;
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("| code | meaning |", 0) == 0) {
            const auto header = cells(line);
            ASSERT_EQ(header.size(), 6u) << line;
            EXPECT_EQ(header[3], "JSON-RPC");
            EXPECT_EQ(header[4], "reason");
            EXPECT_EQ(header[5], "`sandflow` exit");
            in_table = true;
            continue;
        }
        if (!in_table || line.rfind("|---", 0) == 0) continue;
        if (line.empty() || line[0] != '|') break;
        auto c = cells(line);
        ASSERT_EQ(c.size(), 6u) << line;
        EXPECT_TRUE(errc_from_name(c[0])) << "docs/errors.md names a code Errc lacks: " << c[0];
        EXPECT_TRUE(rows.emplace(c[0], c).second) << "two rows for " << c[0];
    }
    ASSERT_TRUE(in_table) << "docs/errors.md has no table headed | code | meaning |";
    for (Errc code : kAllErrcs) {
        const std::string name(errc_name(code));
        auto it = rows.find(name);
        ASSERT_NE(it, rows.end()) << "docs/errors.md has no row for Errc::" << name;
        const auto& c = it->second;
        EXPECT_EQ(c[3], std::to_string(rpc::wire_code(code).code)) << name;
        EXPECT_EQ(c[4], rpc::wire_code(code).reason) << name;
        EXPECT_EQ(c[5], std::to_string(cli::exit_status_for(code))) << name;
    }
    EXPECT_EQ(rows.size(), std::size(kAllErrcs));
}

TEST(JsonRpc, ErrorMappingIsStable) {
    auto r = rpc::to_rpc_error(Error(Errc::script, "boom", {{"type", "ValueError"}}));
    EXPECT_EQ(r.code, -32002);
    EXPECT_EQ(r.data.at("reason"), "script_error");
    EXPECT_EQ(r.data.at("errc"), "script");
    EXPECT_EQ(r.data.at("type"), "ValueError");
    EXPECT_EQ(rpc::to_rpc_error(Error(Errc::timeout, "t")).code, -32003);
    EXPECT_EQ(rpc::to_rpc_error(Error(Errc::limit_exceeded, "l")).code, -32004);
    EXPECT_EQ(rpc::to_rpc_error(Error(Errc::sandbox_unavailable, "s")).code, -32005);
    EXPECT_EQ(rpc::to_rpc_error(Error(Errc::worker_crashed, "w")).code, -32009);
    EXPECT_EQ(rpc::to_rpc_error(Error(Errc::metadata, "m")).code, -32010);
    EXPECT_EQ(rpc::to_rpc_error(Error(Errc::invalid_argument, "i")).code, rpc::kInvalidParams);
    EXPECT_EQ(rpc::to_rpc_error(Error(Errc::internal, "i")).code, rpc::kInternalError);
    EXPECT_EQ(rpc::to_rpc_error(Error(Errc::not_found, "n")).code, -32001);
    EXPECT_EQ(rpc::to_rpc_error(Error(Errc::method_not_found, "m")).code, rpc::kMethodNotFound);
    EXPECT_EQ(rpc::to_rpc_error(Error(Errc::overloaded, "o")).code, -32006);
    EXPECT_EQ(rpc::to_rpc_error(Error(Errc::cancelled, "c")).code, -32007);
    EXPECT_EQ(rpc::to_rpc_error(Error(Errc::unauthorized, "u")).code, -32008);
    EXPECT_EQ(rpc::to_rpc_error(Error(Errc::shutting_down, "s")).code, -32011);
    // And back on the client side.
    auto back = rpc::from_rpc_error(r.code, r.message, r.data);
    EXPECT_EQ(back.code, Errc::script);
    EXPECT_EQ(back.data.at("rpc_code"), -32002);
}

TEST(JsonRpc, EncodesResponsesAndNotifications) {
    EXPECT_EQ(rpc::encode(rpc::make_result("a", json::object{{"x", 1.0}})),
              R"({"jsonrpc":"2.0","id":"a","result":{"x":1.0}})");
    EXPECT_EQ(rpc::encode(rpc::make_notification("script_output", {{"port", "out"}})),
              R"({"jsonrpc":"2.0","method":"script_output","params":{"port":"out"}})");
}

TEST(JsonRpc, DecodesWhatTheServerSends) {
    auto in = rpc::decode_incoming(
        R"([{"jsonrpc":"2.0","method":"script_output","params":{"port":"o"}},)"
        R"({"jsonrpc":"2.0","id":4,"result":{"ok":true}},)"
        R"({"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"nope","data":{}}}])");
    ASSERT_TRUE(in);
    ASSERT_EQ(in->size(), 3u);
    EXPECT_EQ(std::get<rpc::Notification>((*in)[0]).method, "script_output");
    EXPECT_TRUE(std::get<rpc::Response>((*in)[1]).ok);
    EXPECT_EQ(std::get<rpc::Response>((*in)[2]).error.code, -32601);
    EXPECT_FALSE(rpc::decode_incoming("{"));
    EXPECT_FALSE(rpc::decode_incoming(R"({"jsonrpc":"2.0","id":1})"));
}

TEST(Transport, ListenAddresses) {
    auto a = rpc::parse_listen("127.0.0.1:7777");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->host, "127.0.0.1");
    EXPECT_EQ(a->port, 7777);
    auto b = rpc::parse_listen("[::1]:0");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->host, "::1");
    EXPECT_EQ(rpc::parse_listen(":80")->host, "127.0.0.1");
    EXPECT_FALSE(rpc::parse_listen("127.0.0.1"));
    EXPECT_FALSE(rpc::parse_listen("127.0.0.1:99999"));
    EXPECT_FALSE(rpc::parse_listen("example.com:80"));
    EXPECT_FALSE(rpc::parse_listen("::1:80"));

    EXPECT_TRUE(rpc::is_loopback_host("127.0.0.1"));
    EXPECT_TRUE(rpc::is_loopback_host("127.8.9.10"));
    EXPECT_TRUE(rpc::is_loopback_host("::1"));
    EXPECT_TRUE(rpc::is_loopback_host("localhost"));
    EXPECT_FALSE(rpc::is_loopback_host("0.0.0.0"));
    EXPECT_FALSE(rpc::is_loopback_host("::"));
    EXPECT_FALSE(rpc::is_loopback_host("10.0.0.1"));
}

TEST(Transport, ConstantTimeCompareAndUrls) {
    EXPECT_TRUE(rpc::constant_time_equal("secret", "secret"));
    EXPECT_FALSE(rpc::constant_time_equal("secret", "secreT"));
    EXPECT_FALSE(rpc::constant_time_equal("secret", "secret2"));
    EXPECT_FALSE(rpc::constant_time_equal("", "x"));
    EXPECT_TRUE(rpc::constant_time_equal("", ""));

    // ?token= as a browser sends it: percent-encoded.
    EXPECT_EQ(rpc::query_param("/?token=a%2Bb%2fc+d", "token"), "a+b/c+d");
    EXPECT_EQ(rpc::query_param("/x?a=1&token=s3cret&b=2", "token"), "s3cret");
    EXPECT_EQ(rpc::query_param("/x?tokens=1&token=", "token"), "");
    EXPECT_FALSE(rpc::query_param("/x?tokens=1", "token"));
    EXPECT_FALSE(rpc::query_param("/token=1", "token"));
    EXPECT_FALSE(rpc::query_param("/?token=ab%2", "token"));   // cut short
    EXPECT_FALSE(rpc::query_param("/?token=ab%zz", "token"));  // not hex

    auto u = rpc::parse_ws_url("ws://127.0.0.1:7777");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->host, "127.0.0.1");
    EXPECT_EQ(u->port, 7777);
    EXPECT_EQ(u->target, "/");
    auto v = rpc::parse_ws_url("ws://[::1]:9/x?y=1");
    ASSERT_TRUE(v);
    EXPECT_EQ(v->host, "::1");
    EXPECT_EQ(v->target, "/x?y=1");
    EXPECT_FALSE(rpc::parse_ws_url("http://x"));
    EXPECT_FALSE(rpc::parse_ws_url("ws://:80"));
}

class ActorPaths : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/sandflow-paths-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        fs::create_directories(dir_ / "root/actors");
        fs::create_directories(dir_ / "root/sub");
        fs::create_directories(dir_ / "outside");
        for (auto p : {"root/a.actor.py", "root/sub/b.actor.js", "root/actors/c.py",
                       "root/actors/d.js", "root/plain.py", "outside/x.actor.py", "root/notes.txt"})
            std::ofstream(dir_ / p) << "# x\n";
        fs::create_symlink(dir_ / "outside/x.actor.py", dir_ / "root/escape.actor.py");
        fs::create_symlink(dir_ / "root/a.actor.py", dir_ / "root/inside.py");
        auto r = server::canonical_roots({dir_ / "root"});
        ASSERT_TRUE(r);
        roots_ = *r;
    }
    void TearDown() override { fs::remove_all(dir_); }

    std::string reason(std::string_view given) {
        auto r = server::resolve_actor_path(roots_, given);
        EXPECT_FALSE(r) << given;
        if (r) return "";
        return std::string(r.error().data.at("reason").as_string());
    }

    fs::path dir_;
    std::vector<fs::path> roots_;
};

TEST_F(ActorPaths, ResolvesOnlyInsideTheRoots) {
    auto a = server::resolve_actor_path(roots_, "a.actor.py");
    ASSERT_TRUE(a) << a.error().message;
    EXPECT_EQ(*a, fs::canonical(dir_ / "root/a.actor.py"));
    EXPECT_TRUE(server::resolve_actor_path(roots_, (dir_ / "root/sub/b.actor.js").string()));
    EXPECT_TRUE(server::resolve_actor_path(roots_, "inside.py"));  // symlink staying inside

    EXPECT_EQ(reason("../outside/x.actor.py"), "parent_reference");
    EXPECT_EQ(reason("sub/../a.actor.py"), "parent_reference");
    EXPECT_EQ(reason((dir_ / "outside/x.actor.py").string()), "outside_roots");
    EXPECT_EQ(reason("escape.actor.py"), "outside_roots");
    EXPECT_EQ(reason("/etc/passwd"), "outside_roots");
    EXPECT_EQ(reason("missing.py"), "not_found");
    EXPECT_EQ(reason("notes.txt"), "bad_extension");
    EXPECT_EQ(reason("sub"), "not_a_file");
    EXPECT_EQ(reason(""), "not_found");
    EXPECT_EQ(
        std::string(
            server::resolve_actor_path({}, "a.actor.py").error().data.at("reason").as_string()),
        "no_roots");
}

// The rules hold for the file read, not only for the path checked: what a path leads to can
// change between the check and the open. The opened-file check is fed here what such a
// change produces (no race needs to be won).
TEST_F(ActorPaths, TheFileReadIsCheckedNotOnlyThePath) {
    auto a = server::read_actor_file(roots_, "a.actor.py");
    ASSERT_TRUE(a) << a.error().message;
    EXPECT_EQ(a->path, fs::canonical(dir_ / "root/a.actor.py"));
    EXPECT_EQ(a->source, "# x\n");
    EXPECT_EQ(std::string(server::read_actor_file(roots_, "escape.actor.py")
                              .error()
                              .data.at("reason")
                              .as_string()),
              "outside_roots");

    auto why = [&](const fs::path& real) {
        auto r = server::open_actor_file(roots_, real, real.string());
        EXPECT_FALSE(r) << real;
        return r ? std::string() : std::string(r.error().data.at("reason").as_string());
    };
    // A folder on the checked path became a symlink leading out.
    fs::create_symlink(dir_ / "outside", dir_ / "root/swapped");
    EXPECT_EQ(why(fs::canonical(dir_ / "root") / "swapped/x.actor.py"), "outside_roots");
    // The file itself became a symlink (even one staying inside).
    EXPECT_EQ(why(fs::canonical(dir_ / "root") / "inside.py"), "outside_roots");
    // The file became a FIFO: refused without blocking on it.
    ASSERT_EQ(::mkfifo((dir_ / "root/fifo.py").c_str(), 0600), 0);
    EXPECT_EQ(why(fs::canonical(dir_ / "root") / "fifo.py"), "not_a_file");
    // It grew past the limit.
    std::ofstream(dir_ / "root/big.py") << std::string(limits::kMaxScriptBytes + 1, '#');
    auto big = server::open_actor_file(roots_, fs::canonical(dir_ / "root/big.py"), "big.py");
    ASSERT_FALSE(big);
    EXPECT_EQ(big.error().code, Errc::limit_exceeded);
}

TEST_F(ActorPaths, DiscoversTaggedScriptsAndActorsFolders) {
    auto files = server::discover_actor_files(roots_);
    std::vector<std::string> names;
    for (const auto& f : files) names.push_back(f.filename().string());
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{"a.actor.py", "b.actor.js", "c.py", "d.js"}));
}
