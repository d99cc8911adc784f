// `sandflow serve` end to end, the errors: each application error code of docs/protocol.md
// produced by the built binary on 127.0.0.1 and read over a real WebSocket (the C++ client,
// or a raw socket where the wire form itself is the point), with the `data` fields the
// protocol promises, and the server still serving the next call. Then malformed WebSocket
// frames, which must close that connection only, with the right close code.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/json.hpp"
#include "sandflow/client.hpp"
#include "support/server_support.hpp"
#include "support/test_support.hpp"

using namespace sandflow;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

using sandflow::testing::connect;
using sandflow::testing::default_sandbox_runs;
using sandflow::testing::kExamples;
using sandflow::testing::read_server_frame;
using sandflow::testing::read_server_json;
using sandflow::testing::read_until_closed;
using sandflow::testing::ServerProcess;
using sandflow::testing::tcp_connect;
using sandflow::testing::wait_gone;
using sandflow::testing::write_all;
using sandflow::testing::ws_frame;
using sandflow::testing::ws_open;
using ServerErrors = sandflow::testing::ActorDirTest;

// One actor for every way a call can end: its committed state `n` counts the calls that
// succeeded, so a test can tell which state the next call started from.
const char* kCounter = R"(import os
import time
@actor({"component": "counter", "inports": ["die", "sleep", "big", "mb", "gate", "log"],
        "outports": ["out", "progress"]})
async def process(context):
    n = context.get_state("n", 0) + 1
    context.set_state("n", n)
    if context.get_input("log"):
        with open(context.get_input("log"), "a") as f:
            f.write("ran %d\n" % n)
    await context.send_output("progress", n)
    if context.get_input("gate"):
        while not os.path.exists(context.get_input("gate")):
            time.sleep(0.01)
    if context.get_input("die"):
        os.kill(os.getpid(), 9)
    if context.get_input("sleep"):
        time.sleep(context.get_input("sleep"))
    if context.get_input("big"):
        await context.send_output("out", "x" * context.get_input("big"))
    if context.get_input("mb"):
        hog = bytearray(context.get_input("mb") << 20)
        for i in range(0, len(hog), 4096):
            hog[i] = 1
    return {"out": n}
)";

std::int64_t rpc_code(const Error& e) {
    const auto* c = e.data.if_contains("rpc_code");
    return c && c->is_int64() ? c->as_int64() : 0;
}

std::string str(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

// Every error's data names its reason and its internal error class (protocol.md, Errors),
// and the client's Errc is that class (docs/errors.md: one code each, no loss).
void expect_error(const Error& e, std::int64_t code, std::string_view reason) {
    EXPECT_EQ(rpc_code(e), code) << e.message << " " << to_json_string(e.data);
    EXPECT_EQ(str(e.data, "reason"), reason) << to_json_string(e.data);
    EXPECT_EQ(str(e.data, "errc"), errc_name(e.code)) << to_json_string(e.data);
    EXPECT_FALSE(e.message.empty());
}

json::object process_params(std::string_view actor, json::object payload,
                            std::string_view instance = "") {
    json::object p{{"actor_id", actor}, {"payload", std::move(payload)}};
    if (!instance.empty()) p["instance_id"] = instance;
    return p;
}

// The committed count after a call that succeeded (its `out`), or -1.
std::int64_t counted(const Result<client::ProcessResult>& r) {
    if (!r) {
        ADD_FAILURE() << r.error().message;
        return -1;
    }
    return r->outputs.at("out").as_int64();
}

client::ProcessOptions on_instance(std::string id) {
    client::ProcessOptions o;
    o.instance_id = std::move(id);
    return o;
}

pid_t worker_pid(client::Client& c, std::string_view actor) {
    auto d = c.describe(actor);
    EXPECT_TRUE(d) << (d ? "" : d.error().message);
    if (!d) return -1;
    return static_cast<pid_t>(d->at("instances").as_array().at(0).at("worker_pid").as_int64());
}

}  // namespace

TEST_F(ServerErrors, ActorNotFound) {
    ServerProcess srv({"--actors", kExamples.string()});
    auto c = connect(srv);
    ASSERT_TRUE(c);

    auto r = c->process("nobody", {{"input", 1}});
    ASSERT_FALSE(r);
    expect_error(r.error(), -32001, "actor_not_found");
    EXPECT_EQ(str(r.error().data, "actor_id"), "nobody");

    // An instance that does not exist, of a component that does.
    auto u = c->unload("double", "nope");
    ASSERT_FALSE(u);
    expect_error(u.error(), -32001, "actor_not_found");
    EXPECT_EQ(str(u.error().data, "actor_id"), "double");
    EXPECT_EQ(str(u.error().data, "instance_id"), "nope");

    // The wire form, with a string id echoed as sent.
    const int fd = ws_open(srv.port());
    ASSERT_GE(fd, 0);
    write_all(fd, ws_frame(R"({"jsonrpc":"2.0","id":"req-1","method":"process",)"
                           R"("params":{"actor_id":"nobody","payload":{}}})"));
    auto m = read_server_json(fd, 10s);
    ASSERT_TRUE(m && m->is_object());
    EXPECT_EQ(m->at("jsonrpc"), "2.0");
    EXPECT_EQ(m->at("id"), "req-1");
    ASSERT_FALSE(m->as_object().contains("result"));
    const auto& err = m->at("error").as_object();
    EXPECT_EQ(err.at("code"), -32001);
    EXPECT_TRUE(err.at("message").is_string());
    EXPECT_EQ(err.at("data").at("reason"), "actor_not_found");
    EXPECT_EQ(err.at("data").at("actor_id"), "nobody");

    // The same connection and the client are still served.
    write_all(fd, ws_frame(R"({"jsonrpc":"2.0","id":2,"method":"ping","params":{}})"));
    auto pong = read_server_json(fd, 10s);
    ASSERT_TRUE(pong);
    EXPECT_EQ(pong->at("id"), 2);
    EXPECT_EQ(pong->at("result").at("pong"), true);
    ::close(fd);
    std::vector<json::value> outs;
    auto ok = c->process("double", {{"input", 21}},
                         [&](const client::Output& o) { outs.push_back(o.data); });
    ASSERT_TRUE(ok) << ok.error().message;
    EXPECT_EQ(outs, std::vector<json::value>{42});
}

TEST_F(ServerErrors, ScriptErrorCarriesATracebackInTheScriptsOwnLines) {
    // Line numbers matter: process() calls check() on line 6, which raises on line 10.
    write("boom.actor.py", R"(@actor({"component": "boom", "inports": ["x"], "outports": ["out"]})
async def process(context):
    context.set_state("tries", context.get_state("tries", 0) + 1)
    if context.get_input("x") == "ok":
        return {"out": "fine"}
    return check(context.get_input("x"))


def check(x):
    raise ValueError("bad x: " + str(x))
)");
    // process() calls check() on line 9, which throws on line 4.
    write("boom.actor.js",
          R"(const metadata = {component: 'boom_js', inports: ['x'], outports: ['out']};

function check(x) {
    throw new TypeError('bad x: ' + x);
}

async function process(context) {
    if (context.getInput('x') === 'ok') return {out: 'fine'};
    return check(context.getInput('x'));
}
)");
    ServerProcess srv({"--actors", dir_.string()});
    auto c = connect(srv);
    ASSERT_TRUE(c);

    struct Case {
        const char* actor;
        const char* file;
        const char* type;
        std::int64_t outer_line, inner_line;
    };
    for (const Case& k : {Case{"boom", "boom.actor.py", "ValueError", 6, 10},
                          Case{"boom_js", "boom.actor.js", "TypeError", 9, 4}}) {
        SCOPED_TRACE(k.actor);
        auto r = c->process(k.actor, {{"x", 7}});
        ASSERT_FALSE(r);
        const Error& e = r.error();
        expect_error(e, -32002, "script_error");
        EXPECT_EQ(str(e.data, "type"), k.type);
        EXPECT_EQ(str(e.data, "message"), "bad x: 7");
        const auto& tb = e.data.at("traceback").as_array();
        ASSERT_GE(tb.size(), 2u) << to_json_string(e.data);
        // Outermost first, in the script's own file and lines (no SDK frames).
        const auto& outer = tb.front().as_object();
        const auto& inner = tb.back().as_object();
        EXPECT_TRUE(str(outer, "file").ends_with(std::string("/") + k.file)) << str(outer, "file");
        EXPECT_EQ(outer.at("line"), k.outer_line);
        EXPECT_EQ(str(outer, "function"), "process");
        EXPECT_TRUE(str(inner, "file").ends_with(std::string("/") + k.file)) << str(inner, "file");
        EXPECT_EQ(inner.at("line"), k.inner_line);
        EXPECT_EQ(str(inner, "function"), "check");
        EXPECT_NE(str(inner, "code").find("bad x: "), std::string::npos) << str(inner, "code");
        for (const auto& frame : tb)
            EXPECT_TRUE(str(frame.as_object(), "file").ends_with(k.file)) << to_json_string(frame);
        const std::string formatted = str(e.data, "formatted");
        EXPECT_NE(formatted.find(k.file), std::string::npos) << formatted;
        EXPECT_NE(formatted.find("bad x: 7"), std::string::npos) << formatted;

        // The worker stays alive and serves the next call.
        auto ok = c->process(k.actor, {{"x", "ok"}});
        ASSERT_TRUE(ok) << ok.error().message;
        EXPECT_EQ(ok->outputs.at("out"), "fine");
    }
    // The call that raised committed nothing: the next one started from the empty state.
    auto again = c->process("boom", {{"x", "ok"}});
    ASSERT_TRUE(again);
    EXPECT_EQ(again->state.at("tries"), 2);
}

TEST_F(ServerErrors, TimeoutKillsTheSandboxAndTheNextCallGetsTheLastCommittedState) {
    write("counter.actor.py", kCounter);
    ServerProcess srv({"--actors", dir_.string()});
    auto c = connect(srv);
    ASSERT_TRUE(c);
    EXPECT_EQ(counted(c->process("counter", {})), 1);
    const pid_t before = worker_pid(*c, "counter");

    auto params = process_params("counter", {{"sleep", 60}});
    params["timeout_ms"] = 300;
    auto r = c->call("process", params);
    ASSERT_FALSE(r);
    expect_error(r.error(), -32003, "timeout");
    EXPECT_EQ(str(r.error().data, "limit"), "timeout");
    EXPECT_EQ(r.error().data.at("value_ms"), 300);
    EXPECT_TRUE(wait_gone(before, 5s)) << "the timed-out sandbox was not killed";

    auto next = c->process("counter", {});
    EXPECT_EQ(counted(next), 2);
    ASSERT_TRUE(next);
    EXPECT_EQ(next->state.at("n"), 2);
    EXPECT_NE(worker_pid(*c, "counter"), before);
}

TEST_F(ServerErrors, OutputLimitOfOneCallNamesTheLimit) {
    write("counter.actor.py", kCounter);
    ServerProcess srv({"--actors", dir_.string()});
    auto c = connect(srv);
    ASSERT_TRUE(c);
    EXPECT_EQ(counted(c->process("counter", {})), 1);

    auto params = process_params("counter", {{"big", 100'000}});
    params["limits"] = json::object{{"output_bytes", 4096}};
    auto r = c->call("process", params);
    ASSERT_FALSE(r);
    expect_error(r.error(), -32004, "limit_exceeded");
    EXPECT_EQ(str(r.error().data, "limit"), "output_bytes");
    EXPECT_EQ(r.error().data.at("value"), 4096);

    // The limit was this call's only: the same output passes on the next call, which
    // starts from the last committed state.
    EXPECT_EQ(counted(c->process("counter", {{"big", 100'000}})), 2);
}

TEST_F(ServerErrors, MemoryLimitInTheNamespaceSandboxNamesTheLimit) {
    std::string why;
    if (!default_sandbox_runs(&why)) GTEST_SKIP() << why;
    write("counter.actor.py", kCounter);
    ServerProcess srv({"--backend", "namespace", "--actors", dir_.string()});
    auto c = connect(srv);
    ASSERT_TRUE(c);
    EXPECT_EQ(counted(c->process("counter", {})), 1);

    auto params = process_params("counter", {{"mb", 256}});
    params["limits"] = json::object{{"memory_bytes", 64 << 20}};
    auto r = c->call("process", params);
    ASSERT_FALSE(r);
    expect_error(r.error(), -32004, "limit_exceeded");
    EXPECT_EQ(str(r.error().data, "limit"), "memory");
    EXPECT_EQ(r.error().data.at("value"), 64 << 20);

    EXPECT_EQ(counted(c->process("counter", {})), 2);
}

TEST_F(ServerErrors, OverloadedWhenAConnectionHasTooManyCallsInFlight) {
    write("counter.actor.py", kCounter);
    ServerProcess srv({"--actors", dir_.string(), "--max-calls-per-connection", "2"});
    auto a = connect(srv);
    auto b = connect(srv);
    ASSERT_TRUE(a && b);
    const std::string gate = (dir_ / "open").string();
    // Two calls held by the gate (the second queued behind the first on one instance).
    auto first = a->call_async("process", process_params("counter", {{"gate", gate}}, "held"));
    auto second = a->call_async("process", process_params("counter", {{"gate", gate}}, "held"));
    auto third = a->call("process", process_params("counter", {}, "free"));
    ASSERT_FALSE(third);
    expect_error(third.error(), -32006, "overloaded");
    EXPECT_EQ(str(third.error().data, "limit"), "kMaxCallsPerConnection");
    EXPECT_EQ(third.error().data.at("max"), 2);
    // Only load/process/unload count; other connections are not limited by this one.
    EXPECT_TRUE(a->ping());
    EXPECT_EQ(counted(b->process("counter", {}, {}, on_instance("free"))), 1);

    std::ofstream(gate) << "";
    ASSERT_EQ(first.wait_for(30s), std::future_status::ready);
    ASSERT_EQ(second.wait_for(30s), std::future_status::ready);
    EXPECT_TRUE(first.get());
    EXPECT_TRUE(second.get());
    // Its calls done, the connection may call again.
    EXPECT_EQ(counted(a->process("counter", {}, {}, on_instance("free"))), 2);
}

TEST_F(ServerErrors, OverloadedWhenTheServerHasTooManyCallsInFlight) {
    // kMaxCallsTotal has no flag: one raw connection fills it (its own bound raised above
    // it), then another connection's call is refused.
    constexpr int kTotal = 8192;  // limits::kMaxCallsTotal, as protocol.md documents it
    write("counter.actor.py", kCounter);
    ServerProcess srv({"--actors", dir_.string(), "--max-calls-per-connection", "100000"});
    auto b = connect(srv);
    ASSERT_TRUE(b);
    const std::string gate = (dir_ / "open").string();
    const int fd = ws_open(srv.port());
    ASSERT_GE(fd, 0);
    std::string burst;
    for (int i = 0; i < kTotal; ++i)
        burst += ws_frame(R"({"jsonrpc":"2.0","id":)" + std::to_string(i) +
                          R"(,"method":"process","params":{"actor_id":"counter",)"
                          R"("instance_id":"held","payload":{"gate":")" +
                          gate + R"("}}})");
    // The responses wait in the server's send queue until read below.
    std::thread writer([&] { write_all(fd, burst); });
    std::int64_t in_flight = 0;
    for (int i = 0; i < 3000 && in_flight < kTotal; ++i) {
        auto st = b->stats();
        ASSERT_TRUE(st);
        in_flight = st->at("calls_in_flight").as_int64();
        if (in_flight < kTotal) std::this_thread::sleep_for(10ms);
    }
    writer.join();
    ASSERT_EQ(in_flight, kTotal);

    auto refused = b->process("counter", {});
    ASSERT_FALSE(refused);
    expect_error(refused.error(), -32006, "overloaded");
    EXPECT_EQ(str(refused.error().data, "limit"), "kMaxCallsTotal");
    EXPECT_EQ(refused.error().data.at("max"), kTotal);
    EXPECT_TRUE(b->ping());

    // Once the held calls drain, every one of them succeeded and calls are taken again.
    std::ofstream(gate) << "";
    int results = 0;
    while (results < kTotal) {
        auto m = read_server_json(fd, 60s);
        ASSERT_TRUE(m) << "after " << results << " responses";
        if (!m->as_object().contains("id")) continue;  // a script_output notification
        ASSERT_TRUE(m->as_object().contains("result")) << to_json_string(*m);
        ++results;
    }
    ::close(fd);
    EXPECT_EQ(counted(b->process("counter", {})), 1);  // "default": the refused call never ran
}

TEST_F(ServerErrors, CancelledCallsFailAndTheNextCallGetsTheLastCommittedState) {
    write("counter.actor.py", kCounter);
    ServerProcess srv({"--actors", dir_.string()});
    auto c = connect(srv);
    ASSERT_TRUE(c);
    const std::string log = (dir_ / "ran.log").string();
    EXPECT_EQ(counted(c->process("counter", {{"log", log}})), 1);
    const pid_t before = worker_pid(*c, "counter");

    // A call that runs (its first output has arrived) and one queued behind it.
    auto started = std::make_shared<std::promise<void>>();
    auto once = std::make_shared<std::once_flag>();
    std::int64_t running_id = 0, queued_id = 0;
    auto running = c->call_async(
        "process", process_params("counter", {{"sleep", 60}, {"log", log}}),
        [started, once](std::string_view method, const json::value&) {
            if (method == "script_output") std::call_once(*once, [&] { started->set_value(); });
        },
        &running_id);
    auto queued =
        c->call_async("process", process_params("counter", {{"log", log}}), {}, &queued_id);
    ASSERT_EQ(started->get_future().wait_for(30s), std::future_status::ready);

    // By id, over the same connection; the result says whether a sandbox had the call.
    auto q = c->call("cancel", json::object{{"id", queued_id}});
    ASSERT_TRUE(q) << q.error().message;
    EXPECT_EQ(*q, (json::object{{"cancelled", true}, {"was_running", false}}));
    auto k = c->call("cancel", json::object{{"id", running_id}});
    ASSERT_TRUE(k) << k.error().message;
    EXPECT_EQ(*k, (json::object{{"cancelled", true}, {"was_running", true}}));
    for (auto* f : {&running, &queued}) {
        ASSERT_EQ(f->wait_for(30s), std::future_status::ready);
        auto r = f->get();
        ASSERT_FALSE(r);
        expect_error(r.error(), -32007, "cancelled");
    }
    EXPECT_TRUE(wait_gone(before, 5s)) << "the cancelled call's sandbox was not killed";
    auto none = c->call("cancel", json::object{{"id", running_id}});
    ASSERT_TRUE(none) << none.error().message;
    EXPECT_EQ(none->at("cancelled"), false) << "no such call in flight any more";
    EXPECT_TRUE(none->at("reason").is_string()) << to_json_string(*none);

    EXPECT_EQ(counted(c->process("counter", {{"log", log}})), 2);
    // The queued call never ran: the first call, the cancelled one, the last one.
    std::stringstream ran;
    ran << std::ifstream(log).rdbuf();
    EXPECT_EQ(ran.str(), "ran 1\nran 2\nran 2\n");
}

namespace {

struct HttpReply {
    std::string status_line;
    json::value body;
    bool closed = false;
};

// An upgrade request with `headers`, answered with an HTTP error: its status line and
// its JSON body.
HttpReply refused_upgrade(int port, const std::string& headers) {
    const int fd = tcp_connect(port);
    write_all(fd, sandflow::testing::kUpgrade + headers + "\r\n");
    auto [text, closed] = read_until_closed(fd, 10s);
    ::close(fd);
    HttpReply r;
    r.closed = closed;
    r.status_line = text.substr(0, text.find("\r\n"));
    const auto body = text.find("\r\n\r\n");
    if (body == std::string::npos) return r;
    auto j = parse_json(text.substr(body + 4), "refused upgrade body");
    EXPECT_TRUE(j) << text;
    if (j) r.body = std::move(*j);
    return r;
}

}  // namespace

TEST_F(ServerErrors, UnauthorizedUpgradesAreRefusedWithAJsonBody) {
    ServerProcess srv({"--actors", kExamples.string(), "--token", "s3cret", "--allowed-origin",
                       "https://app.example"});
    struct Case {
        const char* what;
        std::string headers;
        const char* status;
    };
    for (const Case& k : {Case{"no token", "", "HTTP/1.1 401 "},
                          Case{"wrong token", "Authorization: Bearer s3cres\r\n", "HTTP/1.1 401 "},
                          Case{"origin not allowed",
                               "Authorization: Bearer s3cret\r\nOrigin: https://evil.example\r\n",
                               "HTTP/1.1 403 "}}) {
        SCOPED_TRACE(k.what);
        const HttpReply r = refused_upgrade(srv.port(), k.headers);
        EXPECT_TRUE(r.status_line.starts_with(k.status)) << r.status_line;
        EXPECT_TRUE(r.closed) << "the refused connection is closed";
        ASSERT_TRUE(r.body.is_object()) << to_json_string(r.body);
        const auto& err = r.body.at("error").as_object();
        EXPECT_EQ(err.at("code"), -32008);
        EXPECT_TRUE(err.at("message").is_string());
        EXPECT_EQ(err.at("data").at("reason"), "unauthorized");
        EXPECT_EQ(err.at("data").at("errc"), "unauthorized");
    }
    // The right token (and an allowed origin) is served, over a raw socket and the client.
    const int fd =
        ws_open(srv.port(), "Authorization: Bearer s3cret\r\nOrigin: https://app.example\r\n");
    ASSERT_GE(fd, 0);
    write_all(fd, ws_frame(R"({"jsonrpc":"2.0","id":1,"method":"ping","params":{}})"));
    auto pong = read_server_json(fd, 10s);
    ASSERT_TRUE(pong);
    EXPECT_EQ(pong->at("result").at("pong"), true);
    ::close(fd);
    client::Options o;
    o.token = "s3cret";
    auto c = connect(srv, o);
    ASSERT_TRUE(c);
    auto r = c->process("double", {{"input", 2}});
    ASSERT_TRUE(r) << r.error().message;
}

TEST_F(ServerErrors, WorkerCrashIsReportedAndTheNextCallGetsANewWorker) {
    write("counter.actor.py", kCounter);
    ServerProcess srv({"--actors", dir_.string()});
    auto c = connect(srv);
    ASSERT_TRUE(c);
    EXPECT_EQ(counted(c->process("counter", {})), 1);
    const pid_t before = worker_pid(*c, "counter");

    auto r = c->process("counter", {{"die", true}});
    ASSERT_FALSE(r);
    expect_error(r.error(), -32009, "worker_crashed");
    EXPECT_NE(str(r.error().data, "exit").find("signal 9"), std::string::npos)
        << to_json_string(r.error().data);
    EXPECT_TRUE(r.error().data.at("stderr_tail").is_array());

    EXPECT_EQ(counted(c->process("counter", {})), 2);
    const pid_t after = worker_pid(*c, "counter");
    EXPECT_GT(after, 0);
    EXPECT_NE(after, before);
}

namespace {

// Runs in the server's child before exec: a user namespace of its own (the same ids
// mapped) in which no further user namespace may be created, as on a host that disabled
// them with `sysctl user.max_user_namespaces=0`. Only system calls and stack buffers: the
// test process may have threads, and the child of fork() must not allocate.
bool disable_user_namespaces() {
    const uid_t uid = ::geteuid();
    const gid_t gid = ::getegid();
    if (::unshare(CLONE_NEWUSER) != 0) return false;
    auto put = [](const char* path, const char* text) {
        const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0) return false;
        const auto len = static_cast<ssize_t>(std::strlen(text));
        const bool ok = ::write(fd, text, static_cast<std::size_t>(len)) == len;
        ::close(fd);
        return ok;
    };
    char map[64];
    std::snprintf(map, sizeof map, "%u %u 1", static_cast<unsigned>(uid),
                  static_cast<unsigned>(uid));
    if (!put("/proc/self/setgroups", "deny") || !put("/proc/self/uid_map", map)) return false;
    std::snprintf(map, sizeof map, "%u %u 1", static_cast<unsigned>(gid),
                  static_cast<unsigned>(gid));
    return put("/proc/self/gid_map", map) && put("/proc/sys/user/max_user_namespaces", "0");
}

// Whether disable_user_namespaces() works for a child of this process.
bool can_disable_user_namespaces() {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(disable_user_namespaces() ? 0 : 1);
    int st = 0;
    ::waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

}  // namespace

TEST_F(ServerErrors, SandboxUnavailableWhereUserNamespacesAreDisabled) {
    std::string why;
    if (!default_sandbox_runs(&why)) GTEST_SKIP() << why;
    if (!can_disable_user_namespaces())
        GTEST_SKIP() << "cannot start a child in a user namespace of its own with "
                        "user.max_user_namespaces = 0 (needed to make the namespace backend "
                        "unable to start sandboxes)";
    write("counter.actor.py", kCounter);
    ServerProcess srv({"--backend", "namespace", "--actors", dir_.string()}, true,
                      disable_user_namespaces);
    ASSERT_GT(srv.port(), 0) << srv.stderr_text();
    auto c = connect(srv);
    ASSERT_TRUE(c);
    for (int i = 0; i < 2; ++i) {  // every call, not only the first
        auto r = c->process("counter", {});
        ASSERT_FALSE(r);
        expect_error(r.error(), -32005, "sandbox_unavailable");
        EXPECT_EQ(str(r.error().data, "backend"), "namespace");
        EXPECT_NE(r.error().message.find("sandflow doctor"), std::string::npos)
            << r.error().message;
        EXPECT_TRUE(c->ping());
    }
    const std::string health = sandflow::testing::http_get(srv.port(), "/healthz");
    EXPECT_NE(health.find(" 503 "), std::string::npos) << health;
    EXPECT_NE(health.find("\"hint\""), std::string::npos) << health;
}

TEST_F(ServerErrors, MalformedFramesCloseOnlyThatConnection) {
    ServerProcess srv({"--actors", kExamples.string()});
    auto bystander = connect(srv);
    ASSERT_TRUE(bystander);
    const std::string ping = R"({"jsonrpc":"2.0","id":1,"method":"ping","params":{}})";
    std::string unmasked = "\x81";
    unmasked += static_cast<char>(ping.size());
    unmasked += ping;
    std::string rsv2 = ws_frame(ping);
    rsv2[0] = static_cast<char>(rsv2[0] | 0x20);
    struct Case {
        const char* what;
        std::string frame;
        int close_code;
    };
    for (const Case& k : {Case{"an unmasked client frame", unmasked, 1002},
                          Case{"reserved opcode 0x3", ws_frame("x", 0x3), 1002},
                          Case{"reserved opcode 0xB (control)", ws_frame("", 0xB), 1002},
                          Case{"RSV2 set with no extension", rsv2, 1002},
                          Case{"invalid UTF-8 in a text frame",
                               ws_frame(R"({"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":")"
                                        "\xc3\x28"
                                        R"("}})"),
                               1007}}) {
        SCOPED_TRACE(k.what);
        const int fd = ws_open(srv.port());
        ASSERT_GE(fd, 0);
        write_all(fd, ws_frame(ping));  // served first: the connection works
        auto pong = read_server_json(fd, 10s);
        ASSERT_TRUE(pong);
        EXPECT_EQ(pong->at("result").at("pong"), true);

        write_all(fd, k.frame);
        std::optional<int> code;
        while (auto f = read_server_frame(fd, 10s)) {
            if (f->opcode != 0x8) continue;
            code = f->close_code;
            break;
        }
        EXPECT_EQ(code.value_or(-1), k.close_code);
        EXPECT_TRUE(read_until_closed(fd, 10s).second) << "the server closes the socket";
        ::close(fd);

        // Other connections, open or new, are served.
        EXPECT_TRUE(bystander->ping());
        const int next = ws_open(srv.port());
        ASSERT_GE(next, 0);
        write_all(next, ws_frame(ping));
        auto again = read_server_json(next, 10s);
        ASSERT_TRUE(again);
        EXPECT_EQ(again->at("result").at("pong"), true);
        ::close(next);
    }
}
