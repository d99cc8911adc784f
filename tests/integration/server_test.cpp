// The runtime server's protocol over an in-memory connection: JSON-RPC text in, text out,
// with real /usr/bin/python3 workers on the `none` backend. No sockets.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "rpc/event_loop.hpp"
#include "rpc/jsonrpc.hpp"
#include "sandbox/none/none_backend.hpp"
#include "server/server.hpp"
#include "support/test_support.hpp"

using namespace sandflow;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Collects what the server sends, like a socket would.
class MemoryConnection : public rpc::Connection {
  public:
    explicit MemoryConnection(std::uint64_t id) : id_(id) {}
    std::uint64_t id() const override { return id_; }
    bool send(std::string text) override {
        std::lock_guard lk(mu_);
        if (!open_) return false;
        auto v = parse_json(text, "server message");
        EXPECT_TRUE(v) << text;
        if (v) sent_.push_back(std::move(*v));
        cv_.notify_all();
        return true;
    }
    void close(std::string_view) override {
        std::lock_guard lk(mu_);
        open_ = false;
    }
    bool is_open() const override {
        std::lock_guard lk(mu_);
        return open_;
    }
    std::string remote() const override { return "memory"; }

    // The next message, waiting up to `timeout`.
    json::value next(std::chrono::milliseconds timeout = 10s) {
        std::unique_lock lk(mu_);
        if (!cv_.wait_for(lk, timeout, [this] { return !sent_.empty(); })) {
            ADD_FAILURE() << "no message from the server";
            return nullptr;
        }
        json::value v = std::move(sent_.front());
        sent_.pop_front();
        return v;
    }
    // Messages up to and including the response with `id`.
    std::vector<json::value> until_response(const json::value& id) {
        std::vector<json::value> out;
        for (int i = 0; i < 1000; ++i) {
            json::value v = next();
            if (v.is_null()) break;
            out.push_back(v);
            if (v.is_object() && v.get_object().contains("id") && v.at("id") == id) break;
        }
        return out;
    }
    bool idle_for(std::chrono::milliseconds d) {
        std::unique_lock lk(mu_);
        return !cv_.wait_for(lk, d, [this] { return !sent_.empty(); });
    }

  private:
    const std::uint64_t id_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<json::value> sent_;
    bool open_ = true;
};

const char* kDouble =
    R"(@actor({"component": "double", "inports": ["input"], "outports": ["output"]})
async def process(context):
    await context.send_output("output", context.get_input("input") * 2)
    return {"status": "completed"}
)";

const char* kCounter = R"(import time
@actor({"component": "counter", "inports": ["by", "fail", "sleep"], "outports": ["n"]})
def process(context):
    if context.get_input("sleep"):
        context.send_output("n", "sleeping")  # tells a test the call is running
        time.sleep(context.get_input("sleep"))
    n = context.get_state("n", 0) + (context.get_input("by") or 1)
    context.set_state("n", n)
    if context.get_input("fail"):
        raise ValueError("asked to fail")
    return {"n": n}
)";

// The `none` backend, with sandbox starts that fail on demand (as when the host stops
// allowing namespaces): a fault no real backend produces when asked.
class FailingBackend final : public sandbox::Backend {
  public:
    std::string_view name() const override { return real_.name(); }
    sandbox::IsolationLevel level() const override { return real_.level(); }
    sandbox::SandboxLimits default_limits() const override { return real_.default_limits(); }
    std::string shared_dir_path(const sandbox::SharedDir& dir) const override {
        return real_.shared_dir_path(dir);
    }
    Result<std::unique_ptr<sandbox::Process>> spawn(const sandbox::WorkerSpec& spec) override {
        if (fail)
            return fail_with(Errc::sandbox_unavailable,
                             "clone(CLONE_NEWUSER) failed: operation not permitted (injected)");
        return real_.spawn(spec);
    }
    std::atomic<bool> fail{false};

  private:
    static Result<std::unique_ptr<sandbox::Process>> fail_with(Errc c, std::string m) {
        return tl::unexpected(Error(c, std::move(m)));
    }
    sandbox::NoneBackend real_;
};

// Every test runs twice: calls driven on an event loop, as `serve` drives them on its I/O
// threads, and calls on the pool, as an embedder without a loop gets them.
class ServerTest : public ::testing::TestWithParam<bool> {
  protected:
    void SetUp() override {
        // As `sandflow serve` does: writing to a dead worker's channel gives EPIPE.
        ::signal(SIGPIPE, SIG_IGN);
        sigset_t pipe;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
        char tmpl[] = "/tmp/sandflow-server-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        fs::create_directories(dir_ / "actors");
        std::ofstream(dir_ / "double.actor.py") << kDouble;
        std::ofstream(dir_ / "actors" / "counter.py") << kCounter;
        std::ofstream(dir_ / "broken.py") << "@actor({\"component\": \"broken\"})\nraise "
                                             "RuntimeError('at import')\ndef process(c): pass\n";
        start({});
    }
    void TearDown() override {
        srv_.reset();
        fs::remove_all(dir_);
    }

    void start(server::ServerOptions o) {
        srv_.reset();
        o.actor_roots = {dir_};
        o.warm_discovered = false;
        srv_ = std::make_unique<server::Server>(backend_, o, runtime::make_memory_store());
        if (GetParam()) srv_->set_event_loop(loop_->loop());
        ASSERT_TRUE(srv_->discover());
        conn_ = open();
    }

    std::shared_ptr<MemoryConnection> open() {
        auto c = std::make_shared<MemoryConnection>(next_conn_++);
        srv_->on_open(c);
        return c;
    }

    void send(const json::value& msg, MemoryConnection* c = nullptr) {
        auto conn = c ? c : conn_.get();
        for (auto& [id, sp] : conns_)
            if (sp.get() == conn) return srv_->on_message(sp, rpc::encode(msg), false);
        srv_->on_message(conn_, rpc::encode(msg), false);
    }
    void send_text(std::string_view text, bool binary = false) {
        srv_->on_message(conn_, text, binary);
    }
    json::value request(const json::value& id, std::string_view method, json::object params) {
        return rpc::make_request(id, method, std::move(params));
    }
    // One call: its notifications and then its response.
    std::vector<json::value> call(const json::value& id, std::string_view method,
                                  json::object params) {
        send(request(id, method, std::move(params)));
        return conn_->until_response(id);
    }
    json::value result_of(const std::vector<json::value>& msgs) {
        EXPECT_FALSE(msgs.empty());
        if (msgs.empty()) return nullptr;
        const auto& last = msgs.back().as_object();
        EXPECT_TRUE(last.contains("result")) << rpc::encode(last);
        return last.contains("result") ? last.at("result") : json::value();
    }
    std::int64_t error_code(const std::vector<json::value>& msgs) {
        if (msgs.empty()) return 0;
        const auto& last = msgs.back().as_object();
        EXPECT_TRUE(last.contains("error")) << rpc::encode(last);
        return last.contains("error") ? last.at("error").at("code").as_int64() : 0;
    }

    FailingBackend backend_;
    fs::path dir_;
    const std::unique_ptr<rpc::LoopThread> loop_ = rpc::LoopThread::start();  // outlives srv_
    std::unique_ptr<server::Server> srv_;
    std::shared_ptr<MemoryConnection> conn_;
    std::map<int, std::shared_ptr<MemoryConnection>> conns_;
    std::uint64_t next_conn_ = 1;
};

}  // namespace

INSTANTIATE_TEST_SUITE_P(Calls, ServerTest, ::testing::Values(true, false),
                         [](const auto& p) { return p.param ? "OnEventLoop" : "OnPool"; });

TEST_P(ServerTest, ReflowExchangeWithStringIds) {
    auto l = result_of(call("req-1", "list", {}));
    EXPECT_EQ(l.at("actors"), (json::array{"counter", "double"}));

    auto load =
        result_of(call("req-2", "load", {{"file_path", (dir_ / "double.actor.py").string()}}));
    EXPECT_EQ(load.at("success"), true);
    EXPECT_EQ(load.at("actor_id"), "double");

    auto msgs = call("req-3", "process",
                     {{"actor_id", "double"},
                      {"payload", {{"input", 21}}},
                      {"config", json::object{}},
                      {"state", json::object{}},
                      {"timestamp", 1700000000000}});
    ASSERT_EQ(msgs.size(), 2u);
    const auto& n = msgs[0].as_object();
    EXPECT_EQ(n.at("method"), "script_output");
    EXPECT_FALSE(n.contains("id"));
    const auto& p = n.at("params").as_object();
    EXPECT_EQ(p.at("actor_id"), "double");
    EXPECT_EQ(p.at("port"), "output");
    EXPECT_EQ(p.at("data"), 42);
    EXPECT_TRUE(p.at("timestamp").is_int64());
    EXPECT_EQ(p.at("call_id"), "req-3");
    EXPECT_EQ(msgs[1].at("id"), "req-3");
    EXPECT_EQ(msgs[1].at("jsonrpc"), "2.0");
    EXPECT_EQ(msgs[1].at("result").at("outputs"), (json::object{{"status", "completed"}}));

    // Where it ran: the sandbox was up after the load, so on the loop when there is one.
    auto driven = result_of(call("req-4", "stats", {})).at("process_driven");
    EXPECT_EQ(driven,
              (json::object{{"event_loop", GetParam() ? 1 : 0}, {"pool", GetParam() ? 0 : 1}}));
}

TEST_P(ServerTest, StandardErrors) {
    send_text("{not json");
    auto e = conn_->next();
    EXPECT_EQ(e.at("error").at("code"), -32700);
    EXPECT_TRUE(e.at("id").is_null());

    EXPECT_EQ(error_code(call(5, "no_such_method", {})), -32601);
    EXPECT_EQ(error_code(call(6, "process", {{"actor_id", 12}})), -32602);
    EXPECT_EQ(error_code(call(7, "process", {{"actor_id", "double"}, {"payload", "x"}})), -32602);
    EXPECT_EQ(error_code(call(8, "process", {{"actor_id", "nobody"}})), -32001);
    send(json::object{{"jsonrpc", "2.0"}, {"id", 9}, {"method", "list"}, {"params", 3}});
    EXPECT_EQ(conn_->next().at("error").at("code"), -32600);

    send_text(R"({"jsonrpc":"2.0","id":1,"method":"ping"})", true);
    e = conn_->next();
    EXPECT_EQ(e.at("error").at("code"), -32600);
    EXPECT_EQ(e.at("error").at("data").at("reason"), "binary_frame");

    // A notification gets no answer, even when it fails.
    send_text(R"({"jsonrpc":"2.0","method":"no_such_method"})");
    send_text(R"({"jsonrpc":"2.0","method":"ping"})");
    EXPECT_TRUE(conn_->idle_for(200ms));
}

TEST_P(ServerTest, BatchesAnswerInOneMessage) {
    send_text(R"([{"jsonrpc":"2.0","id":1,"method":"ping"},
                  {"jsonrpc":"2.0","method":"ping"},
                  {"jsonrpc":"2.0","id":"p","method":"process","params":{"actor_id":"double","payload":{"input":2}}},
                  7])");
    auto out = conn_->next();
    // The script_output of the batched process comes first, on its own.
    ASSERT_TRUE(out.is_object()) << rpc::encode(out);
    EXPECT_EQ(out.at("method"), "script_output");
    auto batch = conn_->next();
    ASSERT_TRUE(batch.is_array()) << rpc::encode(batch);
    EXPECT_EQ(batch.as_array().size(), 3u);  // not the notification
    int seen = 0;
    for (const auto& r : batch.as_array()) {
        if (r.at("id") == 1) {
            seen += 1;
            EXPECT_EQ(r.at("result").at("pong"), true);
        } else if (r.at("id") == "p") {
            seen += 2;
            EXPECT_EQ(r.at("result").at("outputs").at("status"), "completed");
        } else if (r.at("id").is_null()) {
            seen += 4;
            EXPECT_EQ(r.at("error").at("code"), -32600);
        }
    }
    EXPECT_EQ(seen, 7);
}

TEST_P(ServerTest, PackageSetsAreCheckedAtLoadAndShownByDescribe) {
    std::ofstream(dir_ / "needs.py")
        << "import yaml\n@actor({\"component\": \"needs\", \"inports\": [\"doc\"], "
           "\"outports\": [\"out\"], \"requires\": [\"yaml\"]})\n"
           "def process(c):\n    return {\"out\": yaml.safe_load(c.get_input(\"doc\"))}\n";
    // No sets: the load fails with `requirement`, naming the package; nothing is registered.
    auto r = result_of(call(1, "load", {{"file_path", "needs.py"}}));
    EXPECT_EQ(r.at("success"), false);
    EXPECT_EQ(r.at("code"), -32014);
    EXPECT_NE(r.at("error").as_string().find("yaml"), std::string::npos) << rpc::encode(r);
    EXPECT_EQ(error_code(call(2, "describe", {{"actor_id", "needs"}})), -32001);
    if (!fs::exists("/usr/lib/python3/dist-packages/yaml"))
        GTEST_SKIP() << "python3-yaml is not installed (make deps installs it)";
    server::ServerOptions o;
    auto sets = actor::PackageCatalog::create({"system"}, false);
    ASSERT_TRUE(sets) << sets.error().message;
    o.packages = *sets;
    start(o);
    r = result_of(call(3, "load", {{"file_path", "needs.py"}}));
    ASSERT_EQ(r.at("success"), true) << rpc::encode(r);
    auto d = result_of(call(4, "describe", {{"actor_id", "needs"}}));
    const auto& resolved = d.at("packages").at("resolved").as_array().at(0);
    EXPECT_EQ(resolved.at("package"), "PyYAML");
    EXPECT_EQ(resolved.at("set"), "system");
    auto out =
        result_of(call(5, "process", {{"actor_id", "needs"}, {"payload", {{"doc", "[1, 2]"}}}}));
    EXPECT_EQ(out.at("outputs").at("out"), json::array({1, 2})) << rpc::encode(out);
}

TEST_P(ServerTest, LoadRulesAndInlineSource) {
    auto r = result_of(call(1, "load", {{"file_path", "/etc/passwd"}}));
    EXPECT_EQ(r.at("success"), false);
    EXPECT_EQ(r.at("data").at("reason"), "outside_roots");
    r = result_of(call(2, "load", {{"file_path", "../x.py"}}));
    EXPECT_EQ(r.at("data").at("reason"), "parent_reference");
    r = result_of(call(3, "load", {{"file_path", "broken.py"}}));
    EXPECT_EQ(r.at("success"), false);
    EXPECT_EQ(r.at("code"), -32002);  // the script raised at import
    EXPECT_EQ(error_code(call(4, "load", {})), -32602);

    std::string src = kDouble;
    src.replace(src.find("\"double\""), 8, "\"triple\"");
    src.replace(src.find("* 2"), 3, "* 3");
    r = result_of(call(5, "load", {{"source", src}, {"language", "python"}}));
    ASSERT_EQ(r.at("success"), true) << rpc::encode(r);
    auto msgs = call(6, "process", {{"actor_id", "triple"}, {"payload", {{"input", 5}}}});
    EXPECT_EQ(msgs.at(0).at("params").at("data"), 15);
    r = result_of(call(7, "load", {{"source", "x = 1"}, {"language", "python"}}));
    EXPECT_EQ(r.at("success"), false);
    EXPECT_EQ(r.at("code"), -32010);  // metadata error
}

TEST_P(ServerTest, InstancesHaveTheirOwnStateAndErrorsDoNotCommit) {
    auto p = [&](int id, std::string_view inst, json::object payload) {
        return call(id, "process",
                    {{"actor_id", "counter"}, {"instance_id", inst}, {"payload", payload}});
    };
    EXPECT_EQ(result_of(p(1, "a", {{"by", 5}})).at("outputs").at("n"), 5);
    EXPECT_EQ(result_of(p(2, "a", {{"by", 1}})).at("outputs").at("n"), 6);
    EXPECT_EQ(result_of(p(3, "b", {{"by", 1}})).at("outputs").at("n"), 1);
    auto err = p(4, "a", {{"fail", true}});
    ASSERT_EQ(error_code(err), -32002);
    const auto& data = err.back().at("error").at("data").as_object();
    EXPECT_EQ(data.at("type"), "ValueError");
    EXPECT_FALSE(data.at("traceback").as_array().empty());
    auto ok = result_of(p(5, "a", {{"by", 1}}));
    EXPECT_EQ(ok.at("outputs").at("n"), 7);
    EXPECT_EQ(ok.at("state").at("n"), 7);

    // State survives the death of the sandbox.
    auto d = result_of(call(6, "describe", {{"actor_id", "counter"}}));
    pid_t pid = 0;
    for (const auto& i : d.at("instances").as_array())
        if (i.at("instance_id") == "a") pid = static_cast<pid_t>(i.at("worker_pid").as_int64());
    ASSERT_GT(pid, 0);
    ::kill(pid, SIGKILL);
    // On the event loop the server sees the death at once and reaps the worker.
    ASSERT_TRUE(sandflow::testing::wait_gone(pid, 5s)) << "worker " << pid << " did not die";
    if (GetParam()) {  // and says so
        json::value a;
        for (int tries = 0; tries < 500 && a.is_null(); ++tries) {
            const auto desc = result_of(call(60, "describe", {{"actor_id", "counter"}}));
            for (const auto& i : desc.at("instances").as_array())
                if (i.at("instance_id") == "a" && i.at("lost_between_calls") == 1) a = i;
            std::this_thread::sleep_for(10ms);
        }
        ASSERT_FALSE(a.is_null()) << "the death was not reported";
        EXPECT_NE(a.at("last_loss").as_string().find("SIGKILL"), std::string::npos)
            << rpc::encode(a);
    }
    // A sandbox that died while idle is replaced before the next call, which runs on the
    // committed state and is not lost.
    ok = result_of(p(7, "a", {{"by", 1}}));
    EXPECT_EQ(ok.at("outputs").at("n"), 8);

    // A caller-supplied state runs this call (Reflow sends {} on every call: ignored).
    ok = result_of(call(8, "process",
                        {{"actor_id", "counter"},
                         {"instance_id", "b"},
                         {"payload", {{"by", 1}}},
                         {"state", {{"n", 100}}}}));
    EXPECT_EQ(ok.at("outputs").at("n"), 101);

    auto u = result_of(call(9, "unload", {{"actor_id", "counter"}, {"instance_id", "a"}}));
    EXPECT_EQ(u.at("success"), true);
    EXPECT_EQ(result_of(p(10, "a", {{"by", 1}})).at("outputs").at("n"), 1);  // fresh state
    result_of(call(11, "unload", {{"actor_id", "counter"}}));
    EXPECT_EQ(error_code(p(12, "b", {})), -32001);
}

// On an event loop the server watches each worker between calls too: a worker that sends a
// frame then (an output after its call ended) is replaced when that is seen, the host can
// read why, and the next call is not failed for it.
TEST_P(ServerTest, AWorkerLostBetweenCallsIsReportedAndTheNextCallRuns) {
    if (!GetParam())
        GTEST_SKIP() << "without an event loop the server does not watch workers between "
                        "calls: the next call finds what they did (worker_test covers it)";
    std::ofstream(dir_ / "late.actor.js")
        << R"(const metadata = {component: 'late', outports: ['out']};
async function process(context) {
    setTimeout(() => context.sendOutput('out', 'late'), 50);
    return {};
}
)";
    start({});
    auto first = result_of(call(1, "process", {{"actor_id", "late"}}));
    EXPECT_EQ(first.at("outputs"), json::object{});
    json::value inst;
    for (int i = 0; i < 500; ++i) {
        inst = result_of(call(100 + i, "describe", {{"actor_id", "late"}})).at("instances").at(0);
        if (inst.at("lost_between_calls") != 0) break;
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(inst.at("lost_between_calls"), 1) << rpc::encode(inst);
    EXPECT_EQ(inst.at("sandbox"), "down");
    EXPECT_EQ(inst.at("worker_pid"), -1);
    ASSERT_TRUE(inst.as_object().contains("last_loss")) << rpc::encode(inst);
    EXPECT_NE(inst.at("last_loss").as_string().find("a frame between calls"), std::string::npos)
        << rpc::encode(inst);
    EXPECT_EQ(result_of(call(2, "stats", {})).at("between_calls").at("workers_lost"), 1);
    EXPECT_NE(srv_->metrics_text().find(
                  "sandflow_workers_lost_between_calls_total{reason=\"protocol_violation\"} 1"),
              std::string::npos)
        << srv_->metrics_text();

    auto next = call(3, "process", {{"actor_id", "late"}});
    EXPECT_EQ(next.size(), 1u);  // no stray output of the call before
    EXPECT_EQ(result_of(next).at("outputs"), json::object{});
    inst = result_of(call(4, "describe", {{"actor_id", "late"}})).at("instances").at(0);
    EXPECT_EQ(inst.at("worker_starts"), 2);
    EXPECT_EQ(inst.at("sandbox"), "idle");
}

// A script's error is the script's: it cannot pose as one of the runtime's own conditions
// by sending an error frame with a "reason" or "errc" of its choosing.
TEST_P(ServerTest, AScriptCannotForgeTheReasonOfItsError) {
    std::ofstream(dir_ / "forger.actor.py") << R"(
@actor({"component": "forger"})
def process(context):
    send = actor.__globals__["_send"]
    send({"t": "error", "id": context._call_id,
          "error": {"type": "Forged", "message": "m", "reason": "unauthorized",
                    "errc": "internal", "limit": "pids", "traceback": []}})
    import time
    time.sleep(0.2)
    return {}
)";
    start({});
    auto r = call(1, "process", {{"actor_id", "forger"}});
    EXPECT_EQ(error_code(r), -32002);
    const auto& data = r.back().at("error").at("data").as_object();
    EXPECT_EQ(data.at("reason"), "script_error") << rpc::encode(data);
    EXPECT_EQ(data.at("errc"), "script") << rpc::encode(data);
    EXPECT_FALSE(data.contains("limit")) << rpc::encode(data);
    EXPECT_EQ(data.at("type"), "Forged");
    const std::string m = srv_->metrics_text();
    EXPECT_NE(m.find("outcome=\"script_error\"} 1"), std::string::npos) << m;
    EXPECT_EQ(m.find("unauthorized"), std::string::npos) << m;
}

TEST_P(ServerTest, CallsToOneInstanceRunInOrderOthersInParallel) {
    // Three calls to three instances meet: each marks its arrival and waits for the other
    // two, which only calls running at the same time can do.
    std::ofstream(dir_ / "meet.actor.py") << R"(import os, time
@actor({"component": "meet", "inports": ["dir", "me"], "outports": ["met"]})
def process(context):
    d = context.get_input("dir")
    open(os.path.join(d, context.get_input("me")), "w").close()
    end = time.monotonic() + 20
    while len(os.listdir(d)) < 3 and time.monotonic() < end:
        time.sleep(0.01)
    return {"met": len(os.listdir(d)) == 3}
)";
    start({});
    const fs::path meeting = dir_ / "meeting";
    fs::create_directories(meeting);
    for (int i = 0; i < 3; ++i)
        send(request(i, "process",
                     {{"actor_id", "meet"},
                      {"instance_id", "x" + std::to_string(i)},
                      {"payload", {{"dir", meeting.string()}, {"me", std::to_string(i)}}}}));
    for (int i = 0; i < 3; ++i) {
        auto r = conn_->next();
        ASSERT_TRUE(r.as_object().contains("result")) << rpc::encode(r);
        EXPECT_EQ(r.at("result").at("outputs").at("met"), true) << "calls did not overlap";
    }

    for (int i = 0; i < 5; ++i)
        send(request(100 + i, "process", {{"actor_id", "counter"}, {"payload", {{"by", 1}}}}));
    for (int i = 0; i < 5; ++i) {
        auto r = conn_->next();
        EXPECT_EQ(r.at("id"), 100 + i);
        EXPECT_EQ(r.at("result").at("outputs").at("n"), i + 1);
    }
}

TEST_P(ServerTest, CancelTimeoutAndOverload) {
    server::ServerOptions o;
    o.max_calls_per_connection = 2;
    start(o);
    send(request("slow", "process", {{"actor_id", "counter"}, {"payload", {{"sleep", 30}}}}));
    send(request("queued", "process", {{"actor_id", "counter"}, {"payload", {{"by", 1}}}}));
    // A third call on this connection is over its limit.
    auto over = call("third", "process", {{"actor_id", "counter"}});
    EXPECT_EQ(error_code(over), -32006);
    EXPECT_EQ(over.back().at("error").at("data").at("limit"), "kMaxCallsPerConnection");

    // "slow" is running once its first output came (a fixed wait assumed it, and lost the
    // race when starting its sandbox took longer: the cancel then came before the start).
    auto is_output = [](const json::value& m) {
        return m.is_object() && m.get_object().contains("method") &&
               m.at("method") == "script_output";
    };
    if (std::none_of(over.begin(), over.end(), is_output)) {
        json::value m = conn_->next(30s);
        ASSERT_TRUE(is_output(m)) << rpc::encode(m);
    }
    auto c = call("c1", "cancel", {{"id", "slow"}});
    EXPECT_EQ(result_of(c).at("cancelled"), true);
    // Both answers, in either order: the queued call may finish in its new sandbox before
    // the cancelled one's answer goes out (JSON-RPC matches answers by id), and the cancelled
    // one may go out before the cancel's own answer (its worker died at once).
    json::value slow, queued;
    auto take = [&](const json::value& m) {
        if (!m.is_object() || !m.get_object().contains("id")) return;
        (m.at("id") == "slow" ? slow : queued) = m;
    };
    for (std::size_t i = 0; i + 1 < c.size(); ++i) take(c[i]);
    while (!(slow.is_object() && queued.is_object())) {
        auto m = conn_->next();
        if (!m.is_object()) break;  // the assertion below shows which answer is missing
        take(m);
    }
    ASSERT_TRUE(slow.is_object() && queued.is_object()) << rpc::encode(slow) << rpc::encode(queued);
    EXPECT_EQ(queued.at("id"), "queued");
    EXPECT_EQ(slow.at("error").at("code"), -32007) << rpc::encode(slow);
    EXPECT_EQ(queued.at("result").at("outputs").at("n"), 1)
        << rpc::encode(queued);  // a new sandbox

    auto t = call("t", "process",
                  {{"actor_id", "counter"}, {"payload", {{"sleep", 5}}}, {"timeout_ms", 200}});
    EXPECT_EQ(error_code(t), -32003);
    EXPECT_EQ(result_of(call("after", "process", {{"actor_id", "counter"}})).at("outputs").at("n"),
              2);
    EXPECT_EQ(result_of(call("nf", "cancel", {{"id", "gone"}})).at("cancelled"), false);

    const std::string m = srv_->metrics_text();
    EXPECT_NE(m.find("sandflow_calls_total{method=\"process\",outcome=\"cancelled\"} 1"),
              std::string::npos)
        << m;
    // Kills are the calls that cost their worker: not the refused third call.
    EXPECT_NE(m.find("sandflow_limit_kills_total{reason=\"timeout\"} 1"), std::string::npos);
    EXPECT_NE(m.find("sandflow_limit_kills_total{reason=\"cancelled\"} 1"), std::string::npos);
    EXPECT_EQ(m.find("sandflow_limit_kills_total{reason=\"overloaded\"}"), std::string::npos) << m;
    EXPECT_NE(m.find("sandflow_call_duration_seconds_bucket{le=\"+Inf\"}"), std::string::npos);
    EXPECT_NE(m.find("sandflow_sandboxes{state=\"idle\"}"), std::string::npos);
}

TEST_P(ServerTest, HealthAndDrain) {
    auto h = srv_->on_http("/healthz", true);
    EXPECT_EQ(h.status, 200);
    EXPECT_NE(h.body.find("\"status\":\"ok\""), std::string::npos);
    EXPECT_EQ(srv_->on_http("/metrics", false).status, 401);
    EXPECT_EQ(srv_->on_http("/nope", true).status, 404);
    srv_->set_backend_health(false, "user namespaces are disabled");
    h = srv_->on_http("/healthz", true);
    EXPECT_EQ(h.status, 503);
    EXPECT_NE(h.body.find("user namespaces"), std::string::npos);

    // A sandbox that starts says the backend can run again.
    EXPECT_EQ(result_of(call(10, "process", {{"actor_id", "double"}, {"payload", {{"input", 1}}}}))
                  .at("outputs")
                  .at("status"),
              "completed");
    EXPECT_EQ(srv_->on_http("/healthz", true).status, 200);
    // One that cannot start for want of a sandbox says it cannot, with why.
    backend_.fail = true;
    auto failed = call(11, "process",
                       {{"actor_id", "counter"}, {"instance_id", "x"}, {"payload", {{"by", 1}}}});
    EXPECT_EQ(error_code(failed), -32005);
    h = srv_->on_http("/healthz", true);
    EXPECT_EQ(h.status, 503);
    EXPECT_NE(h.body.find("(injected)"), std::string::npos) << h.body;
    backend_.fail = false;
    EXPECT_EQ(result_of(call(12, "process",
                             {{"actor_id", "counter"}, {"instance_id", "x"}, {"payload", {}}}))
                  .at("outputs")
                  .at("n"),
              1);
    EXPECT_EQ(srv_->on_http("/healthz", true).status, 200);

    send(request(1, "process", {{"actor_id", "counter"}, {"payload", {{"sleep", 0.3}}}}));
    std::this_thread::sleep_for(100ms);
    srv_->begin_drain();
    EXPECT_EQ(error_code(call(2, "process", {{"actor_id", "counter"}})), -32011);
    EXPECT_EQ(result_of(call(3, "ping", {})).at("pong"), true);  // still answered
    EXPECT_TRUE(srv_->wait_idle(std::chrono::steady_clock::now() + 5s));
    EXPECT_EQ(conn_->next().at("result").at("outputs").at("n"), 1);  // call 1 finished

    send(request(4, "process", {{"actor_id", "double"}, {"payload", {{"input", 1}}}}));
    srv_->abort_calls();
    srv_->shutdown();
}

// Aborting (a shutdown past its grace period) stops every running call, also those nobody
// waits for: a notification's, and one whose connection has closed.
TEST_P(ServerTest, AbortStopsCallsNobodyWaitsFor) {
    send(json::object{
        {"jsonrpc", "2.0"},
        {"method", "process"},
        {"params", {{"actor_id", "counter"}, {"instance_id", "n"}, {"payload", {{"sleep", 60}}}}}});
    auto gone = open();
    conns_[2] = gone;
    send(request("g", "process",
                 {{"actor_id", "counter"}, {"instance_id", "g"}, {"payload", {{"sleep", 60}}}}),
         gone.get());
    json::value busy;
    for (int i = 0; i < 500; ++i) {
        busy = result_of(call(100 + i, "stats", {})).at("sandboxes").at("busy");
        if (busy == 2) break;
        std::this_thread::sleep_for(10ms);
    }
    ASSERT_EQ(busy, 2) << "both calls should be running";
    srv_->on_close(gone);
    srv_->begin_drain();
    srv_->abort_calls();
    // Well before the scripts' 60 s.
    EXPECT_TRUE(srv_->wait_idle(std::chrono::steady_clock::now() + 20s));
    EXPECT_EQ(result_of(call(3, "stats", {})).at("sandboxes").at("busy"), 0);
}

// Limits (runtime/actor_limits.hpp) declared by an actor, asked for by a load and by a
// call: each applies on top of the one before, and nothing may pass the server's maxima.
TEST_P(ServerTest, LimitsFromMetadataLoadAndCallWithinTheMaxima) {
    server::ServerOptions o;
    o.max_limits.output_bytes = 1u << 20;
    start(o);
    std::ofstream(dir_ / "chatty.py")
        << R"(@actor({"component": "chatty", "inports": ["n"], "outports": ["out"], "limits": {"output_bytes": 50000}})
def process(context):
    for i in range(context.get_input("n")):
        print("x" * 1000)
    return {"out": "done"}
)";
    auto load = result_of(call(1, "load", {{"file_path", (dir_ / "chatty.py").string()}}));
    ASSERT_EQ(load.at("success"), true) << rpc::encode(load);

    // The metadata's 50 kB: 100 kB of prints crosses it.
    auto over = call(2, "process", {{"actor_id", "chatty"}, {"payload", {{"n", 100}}}});
    ASSERT_TRUE(over.back().as_object().contains("error")) << rpc::encode(over.back());
    const auto& err = over.back().at("error");
    EXPECT_EQ(err.at("data").at("limit"), "output_bytes") << rpc::encode(err);
    EXPECT_EQ(err.at("data").at("value"), 50000) << rpc::encode(err);

    // A call may ask for more, up to the maximum; the next call is back to 50 kB.
    EXPECT_EQ(result_of(call(3, "process",
                             {{"actor_id", "chatty"},
                              {"payload", {{"n", 100}}},
                              {"limits", {{"output_bytes", 200000}}}}))
                  .at("outputs")
                  .at("out"),
              "done");
    EXPECT_TRUE(call(4, "process", {{"actor_id", "chatty"}, {"payload", {{"n", 100}}}})
                    .back()
                    .as_object()
                    .contains("error"));
    auto above = call(5, "process",
                      {{"actor_id", "chatty"},
                       {"payload", {{"n", 1}}},
                       {"limits", {{"output_bytes", 2u << 20}}}});
    ASSERT_TRUE(above.back().as_object().contains("error"));
    EXPECT_NE(rpc::encode(above.back()).find("above this runtime's maximum of 1048576"),
              std::string::npos)
        << rpc::encode(above.back());

    // A load's limits hold for that instance only.
    auto l2 = result_of(call(6, "load",
                             {{"file_path", (dir_ / "chatty.py").string()},
                              {"instance_id", "roomy"},
                              {"limits", {{"output_bytes", 500000}}}}));
    ASSERT_EQ(l2.at("success"), true) << rpc::encode(l2);
    EXPECT_EQ(
        result_of(
            call(7, "process",
                 {{"actor_id", "chatty"}, {"instance_id", "roomy"}, {"payload", {{"n", 100}}}}))
            .at("outputs")
            .at("out"),
        "done");

    // Malformed limits are the request's error, with where and what.
    auto bad = call(8, "process",
                    {{"actor_id", "chatty"}, {"payload", {{"n", 1}}}, {"limits", {{"mem", 1}}}});
    EXPECT_EQ(error_code(bad), -32602);
    EXPECT_NE(rpc::encode(bad.back()).find("unknown limit 'mem'"), std::string::npos);
    auto bad_load = result_of(call(
        9, "load",
        {{"file_path", (dir_ / "chatty.py").string()}, {"limits", {{"output_bytes", 5u << 20}}}}));
    EXPECT_EQ(bad_load.at("success"), false);
}

// A cancel that arrives while the call's sandbox is still starting (here: a script that
// takes 0.8 s to import) stops the call before it runs instead of being lost.
TEST_P(ServerTest, CancelWhileTheSandboxStartsStopsTheCall) {
    std::ofstream(dir_ / "slow_start.actor.py")
        << "import time\ntime.sleep(0.8)\n"
           "@actor({\"component\": \"slow_start\", \"inports\": [\"x\"], \"outports\": [\"y\"]})\n"
           "def process(context):\n    return {\"y\": 1}\n";
    start({});  // registered, not started (a load would start the sandbox)
    send(request("p", "process", {{"actor_id", "slow_start"}, {"payload", {{"x", 1}}}}));
    std::this_thread::sleep_for(200ms);  // the sandbox is starting
    auto c = call("c", "cancel", {{"id", "p"}});
    EXPECT_EQ(result_of(c).at("cancelled"), true);
    EXPECT_EQ(result_of(c).at("was_running"), false);
    auto p = conn_->next();
    EXPECT_EQ(p.at("id"), "p");
    ASSERT_TRUE(p.as_object().contains("error")) << rpc::encode(p);
    EXPECT_EQ(p.at("error").at("code"), -32007);
    // The instance serves the next call.
    EXPECT_EQ(result_of(call("q", "process", {{"actor_id", "slow_start"}, {"payload", {{"x", 1}}}}))
                  .at("outputs")
                  .at("y"),
              1);
}
