// Persistent workers with the real /usr/bin/python3 and /usr/bin/node, driven through
// runtime::Instance, every test on every backend (worker_backends()): `none`, `none` with the
// channel on stdin, the namespace sandbox and the gvisor sandbox (each skipped, with the
// reason, where it cannot run; gvisor in the optimised build only). What only a sandbox has
// is in namespace_worker_test and gvisor_worker_test.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "actor/sdk.hpp"
#include "core/frame.hpp"
#include "runtime/instance.hpp"
#include "runtime/runtime_limits.hpp"
#include "sandbox/mechanisms/cgroups.hpp"
#include "sandflow/value.hpp"
#include "support/test_support.hpp"
#include "support/worker_support.hpp"

using namespace sandflow;
namespace fs = std::filesystem;

namespace {

class WorkerTest : public ::testing::TestWithParam<std::string> {
  protected:
    void SetUp() override {
        owned_ = sandflow::testing::backend_for_test(GetParam());
        if (IsSkipped()) return;
        ASSERT_TRUE(owned_);
        char tmpl[] = "/tmp/sandflow-worker-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        if (!dir_.empty()) fs::remove_all(dir_);
    }

    fs::path write(const std::string& name, const std::string& text) {
        return sandflow::testing::write_script(dir_, name, text);
    }

    Result<std::unique_ptr<runtime::Instance>> load(const fs::path& script,
                                                    json::object state = {}) {
        auto spec = runtime::spec_from_file(script);
        if (!spec) return tl::unexpected(spec.error());
        spec->initial_state = std::move(state);
        spec->on_log = [this](const runtime::LogLine& l) { load_logs_.push_back(l.text); };
        return runtime::Instance::create(*owned_, std::move(*spec));
    }

    std::unique_ptr<runtime::Instance> must_load(const fs::path& script, json::object state = {}) {
        auto inst = load(script, std::move(state));
        EXPECT_TRUE(inst) << (inst ? "" : inst.error().message);
        return inst ? std::move(*inst) : nullptr;
    }

    using Recorded = sandflow::testing::RecordedEvents;

    static runtime::CallRequest req(json::object inputs, json::object config = {}) {
        return sandflow::testing::call_request(std::move(inputs), std::move(config));
    }

    std::unique_ptr<sandbox::Backend> owned_;
    fs::path dir_;
    std::vector<std::string> load_logs_;
};

// Tests that reach into the worker from the host, through files it reads or the pid it
// reports: on `none` only, where host and worker share both. (The namespace sandbox's own
// kill and streaming scenarios are in namespace_worker_test.)
class HostWorkerTest : public WorkerTest {};

const char* const kDouble = sandflow::testing::kDoublePy;

const char* const kDoubleJs = sandflow::testing::kDoubleJs;

}  // namespace

TEST_P(WorkerTest, SeedDoublingActorStreamsThenReturns) {
    for (auto [name, text] : {std::pair{"d.py", kDouble}, std::pair{"d.js", kDoubleJs}}) {
        auto inst = must_load(write(name, text));
        ASSERT_TRUE(inst);
        Recorded rec;
        auto r = inst->call(req({{"input", 21}}), rec.events());
        ASSERT_TRUE(r) << r.error().message;
        ASSERT_EQ(rec.outputs.size(), 1u) << name;
        EXPECT_EQ(rec.outputs[0].first, "output");
        EXPECT_EQ(rec.outputs[0].second, json::value(42));
        EXPECT_TRUE(rec.outputs[0].second.is_int64());  // integers stay integers
        EXPECT_EQ(r->outputs, (json::object{{"status", "completed"}}));
    }
}

TEST_P(HostWorkerTest, StreamedOutputsArriveInOrderAndBeforeTheCallEnds) {
    // The script blocks after each output until the host has seen it (the host creates a
    // file from its output callback): if outputs were held back until the end of the
    // call, the call could not finish and would time out.
    const fs::path flag = dir_ / "seen";
    auto py = write("s.py", R"(import os
@actor({"component": "streamer", "inports": ["n", "flag"], "outports": ["seq"]})
def process(context):
    flag = context.get_input("flag")
    for i in range(context.get_input("n")):
        context.send_output_sync("seq", i)
        path = "%s.%d" % (flag, i)
        while not os.path.exists(path):
            pass
    return None
)");
    auto js = write("s.js", R"(const fs = require('fs');
const metadata = {component: 'streamer', inports: ['n', 'flag'], outports: ['seq']};
async function process(ctx) {
    for (let i = 0; i < ctx.getInput('n'); i++) {
        ctx.sendOutput('seq', i);
        while (!fs.existsSync(`${ctx.getInput('flag')}.${i}`)) {}
    }
}
)");
    for (const auto& script : {py, js}) {
        auto inst = must_load(script);
        ASSERT_TRUE(inst);
        const std::string base = flag.string() + script.extension().string();
        std::vector<std::int64_t> seen;
        runtime::CallEvents ev;
        ev.on_output = [&](std::string_view port, const json::value& v) {
            EXPECT_EQ(port, "seq");
            seen.push_back(v.as_int64());
            std::ofstream(base + "." + std::to_string(v.as_int64())) << "";
        };
        auto rq = req({{"n", 50}, {"flag", base}});
        rq.timeout = std::chrono::seconds(20);
        auto r = inst->call(rq, ev);
        ASSERT_TRUE(r) << r.error().message;
        ASSERT_EQ(seen.size(), 50u);
        for (std::int64_t i = 0; i < 50; ++i) EXPECT_EQ(seen[static_cast<std::size_t>(i)], i);
    }
}

TEST_P(WorkerTest, StateCommitsOnlyOnSuccessAndAwaitFormsWork) {
    auto py = write("c.py",
                    R"(@actor({"component": "counter", "inports": ["fail"], "outports": ["count"]})
async def process(context):
    n = await context.get_state("counter", 0)
    plain = context.get_state("counter", 0)
    assert n == plain
    await context.set_state("counter", n + 1)
    context.set_state("last", {"n": n + 1})
    if context.get_input("fail"):
        raise RuntimeError("failing after set_state")
    if n + 1 == 3:
        await context.delete_state("last")
    return {"count": n + 1}
)");
    auto js = write(
        "c.js", R"(const metadata = {component: 'counter', inports: ['fail'], outports: ['count']};
async function process(context) {
    const n = await context.getState('counter', 0);
    await context.setState('counter', n + 1);
    context.setState('last', {n: n + 1});
    if (context.getInput('fail')) throw new Error('failing after setState');
    if (n + 1 === 3) await context.deleteState('last');
    return {count: n + 1};
}
)");
    for (const auto& script : {py, js}) {
        auto inst = must_load(script, {{"counter", 0}});
        ASSERT_TRUE(inst);
        Recorded rec;
        auto r1 = inst->call(req({{"fail", false}}), rec.events());
        ASSERT_TRUE(r1) << r1.error().message;
        EXPECT_EQ(r1->state, (json::object{{"counter", 1}, {"last", {{"n", 1}}}}));
        auto bad = inst->call(req({{"fail", true}}), rec.events());
        ASSERT_FALSE(bad);
        EXPECT_EQ(bad.error().code, Errc::script);
        EXPECT_EQ(inst->state().at("counter"), json::value(1));  // not committed
        auto r2 = inst->call(req({{"fail", false}}), rec.events());
        ASSERT_TRUE(r2) << r2.error().message;
        EXPECT_EQ(r2->outputs.at("count"), json::value(2));  // the worker did not keep it either
        auto r3 = inst->call(req({{"fail", false}}), rec.events());
        ASSERT_TRUE(r3);
        EXPECT_EQ(r3->state, (json::object{{"counter", 3}}));  // deleted
        EXPECT_EQ(inst->worker_starts(), 1u);
    }
}

TEST_P(WorkerTest, CallerSuppliedStateIsUsedAndCommittedStateRestoredAfterAFailure) {
    auto inst = must_load(
        write("c.py", R"(@actor({"component": "c", "inports": ["fail"], "outports": ["v"]})
def process(ctx):
    v = ctx.get_state("v", 0)
    if ctx.get_input("fail"):
        raise ValueError("no")
    ctx.set_state("v", v + 1)
    return {"v": v}
)"),
        {{"v", 10}});
    ASSERT_TRUE(inst);
    Recorded rec;
    auto rq = req({{"fail", true}});
    rq.state = json::object{{"v", 100}};
    ASSERT_FALSE(inst->call(rq, rec.events()));
    auto r = inst->call(req({{"fail", false}}), rec.events());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->outputs.at("v"), json::value(10));  // committed state, not the failed call's
    rq = req({{"fail", false}});
    rq.state = json::object{{"v", 100}};
    r = inst->call(rq, rec.events());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->outputs.at("v"), json::value(100));
    EXPECT_EQ(inst->state().at("v"), json::value(101));
}

TEST_P(WorkerTest, ExceptionsCarryTheScriptsLineNumbersAndTheWorkerLivesOn) {
    auto py = write("e.py", R"(@actor({"component": "e", "inports": ["x"], "outports": ["y"]})
def process(context):
    return {"y": helper(context.get_input("x"))}

def helper(x):
    if x < 0:
        raise ValueError("negative: %d" % x)
    return x
)");
    auto js = write("e.js", R"(const metadata = {component: 'e', inports: ['x'], outports: ['y']};

function helper(x) {
    if (x < 0) {
        throw new RangeError(`negative: ${x}`);
    }
    return x;
}
async function process(context) {
    return {y: helper(context.getInput('x'))};
}
)");
    struct Case {
        fs::path script;
        const char* type;
        std::int64_t raise_line, call_line;
    };
    for (const auto& c : {Case{py, "ValueError", 7, 3}, Case{js, "RangeError", 5, 10}}) {
        auto inst = must_load(c.script);
        ASSERT_TRUE(inst);
        Recorded rec;
        const pid_t pid = inst->worker_pid();
        auto r = inst->call(req({{"x", -1}}), rec.events());
        ASSERT_FALSE(r);
        const auto& e = r.error();
        EXPECT_EQ(e.code, Errc::script);
        EXPECT_EQ(e.data.at("type").as_string(), c.type);
        EXPECT_EQ(e.data.at("message").as_string(), "negative: -1");
        const auto& tb = e.data.at("traceback").as_array();
        ASSERT_GE(tb.size(), 2u) << json::serialize(e.data);
        EXPECT_EQ(tb.back().at("line").as_int64(), c.raise_line) << json::serialize(e.data);
        EXPECT_EQ(tb.back().at("file").as_string(), c.script.string());
        EXPECT_EQ(tb.back().at("function").as_string(), "helper");
        EXPECT_EQ(tb[tb.size() - 2].at("line").as_int64(), c.call_line);
        EXPECT_NE(e.message.find(c.script.string() + ":" + std::to_string(c.raise_line)),
                  std::string::npos)
            << e.message;
        auto ok = inst->call(req({{"x", 5}}), rec.events());
        ASSERT_TRUE(ok) << ok.error().message;
        EXPECT_EQ(ok->outputs.at("y"), json::value(5));
        EXPECT_EQ(inst->worker_pid(), pid);  // the same worker
    }
}

TEST_P(WorkerTest, LoadErrorsAreReportedWithLocations) {
    auto syntax =
        load(write("bad.py", "@actor({\"component\": \"x\"})\ndef process(c):\n    return {\n"));
    ASSERT_FALSE(syntax);
    EXPECT_EQ(syntax.error().code, Errc::script);
    EXPECT_EQ(syntax.error().data.at("type").as_string(), "SyntaxError");

    auto js_syntax = load(write(
        "bad.js", "const metadata = {component: 'x'};\nfunction process(c) {\n  return {;\n}\n"));
    ASSERT_FALSE(js_syntax);
    EXPECT_EQ(js_syntax.error().data.at("type").as_string(), "SyntaxError");
    const auto& tb = js_syntax.error().data.at("traceback").as_array();
    ASSERT_FALSE(tb.empty()) << json::serialize(js_syntax.error().data);
    EXPECT_EQ(tb.back().at("line").as_int64(), 3);

    const auto& py_tb = syntax.error().data.at("traceback").as_array();
    ASSERT_FALSE(py_tb.empty()) << json::serialize(syntax.error().data);
    EXPECT_EQ(py_tb.back().at("line").as_int64(), 3) << json::serialize(syntax.error().data);
    EXPECT_EQ(py_tb.back().at("file").as_string(), (dir_ / "bad.py").string());

    const auto imp =
        write("imp.py", "@actor({\"component\": \"x\"})\ndef process(c):\n    pass\n\n1/0\n");
    auto at_import = load(imp);
    ASSERT_FALSE(at_import);
    EXPECT_EQ(at_import.error().data.at("type").as_string(), "ZeroDivisionError");
    const auto& imp_tb = at_import.error().data.at("traceback").as_array();
    ASSERT_FALSE(imp_tb.empty()) << json::serialize(at_import.error().data);
    EXPECT_EQ(imp_tb.back().at("line").as_int64(), 5);
    EXPECT_EQ(imp_tb.back().at("file").as_string(), imp.string());
    EXPECT_EQ(imp_tb.back().at("function").as_string(), "<module>");
}

// The Python worker runs the script's text without compile() (docs/decisions.md): every code
// object the script made, a method's and a lambda's too, must still name the script's file.
TEST_P(WorkerTest, EveryCodeObjectOfAPythonScriptNamesItsFile) {
    const auto py = write("names.py", R"(import sys
@actor({"component": "n", "outports": ["files"]})
def process(context):
    return {"files": sorted({process.__code__.co_filename, Helper.method.__code__.co_filename,
                             LAMBDA.__code__.co_filename, MODULE_FILE,
                             Helper().method().co_filename})}

class Helper:
    def method(self):
        return sys._getframe().f_code

LAMBDA = lambda: None
MODULE_FILE = sys._getframe().f_code.co_filename
)");
    auto inst = must_load(py);
    ASSERT_TRUE(inst);
    Recorded rec;
    auto r = inst->call(req({}), rec.events());
    ASSERT_TRUE(r) << r.error().message;
    // The module's own code is renamed after its last line ran: while it runs it is
    // "<string>", which is what MODULE_FILE caught; every function's is the script's.
    EXPECT_EQ(r->outputs.at("files"), (json::array{py.string(), "<string>"}))
        << json::serialize(r->outputs);
}

namespace {

// The first frame a worker sends on `proc`'s channel (non-blocking), or an error after 30 s.
Result<json::object> first_frame(sandbox::Process& proc) {
    FrameDecoder decoder;
    for (int waited_ms = 0; waited_ms < 30'000;) {
        if (auto f = decoder.next()) return *f;
        pollfd p{proc.channel_fd(), POLLIN, 0};
        if (::poll(&p, 1, 100) == 0) {
            waited_ms += 100;
            continue;
        }
        char buf[4096];
        const ssize_t n = ::read(proc.channel_fd(), buf, sizeof buf);
        if (n == 0) return fail(Errc::worker_crashed, "the worker closed its channel");
        if (n > 0) decoder.feed(std::string_view(buf, static_cast<std::size_t>(n)));
    }
    return fail(Errc::timeout, "no frame within 30 s");
}

// Starts the Python bootstrap on `none` with `payload` as its first frame; returns the hello.
Result<json::object> bootstrap_hello(const std::string& payload) {
    sandbox::NoneBackend none;
    sandbox::WorkerSpec ws;
    ws.argv = actor::sdk::python_bootstrap_argv(sandbox::kChannelFd);
    auto proc = none.spawn(ws);
    if (!proc) return tl::unexpected(proc.error());
    const std::string frame = encode_raw_frame(payload);
    std::size_t sent = 0;
    while (sent < frame.size()) {
        pollfd p{(*proc)->channel_fd(), POLLOUT, 0};
        ::poll(&p, 1, 1000);
        const ssize_t n = ::write((*proc)->channel_fd(), frame.data() + sent, frame.size() - sent);
        if (n > 0) sent += static_cast<std::size_t>(n);
        if (n < 0 && errno != EAGAIN) return fail(Errc::worker_crashed, "write failed");
    }
    return first_frame(**proc);
}

}  // namespace

// The bootstrap runs the build's code only on an interpreter with that code's bytecode magic;
// given another magic it compiles the source it is sent with, and reports that code (with
// its own magic) for the runtime to start later workers from.
TEST(PythonBootstrap, CodeForAnotherBytecodeMagicIsNotRunTheSourceIs) {
    ASSERT_EQ(actor::sdk::kPythonWorkerMagic.size(), 4u) << "the build compiled no shim";
    const std::string other = "\x01\x02\x03\x04";
    ASSERT_NE(std::string(actor::sdk::kPythonWorkerMagic), other);
    // Bytes that would raise if marshal read them: only the source can start this worker.
    auto hello = bootstrap_hello(actor::sdk::python_code_frame(other, "not marshal data"));
    ASSERT_TRUE(hello) << hello.error().message;
    EXPECT_EQ(hello->at("t").as_string(), "hello");
    ASSERT_TRUE(hello->contains("code")) << json::serialize(*hello);
    auto magic = base64_decode(hello->at("magic").as_string());
    ASSERT_TRUE(magic);
    EXPECT_EQ(std::string(magic->begin(), magic->end()), actor::sdk::kPythonWorkerMagic);

    // The build's own code on the interpreter it was built for: run as it is, nothing reported.
    auto built = bootstrap_hello(actor::sdk::python_code_frame(actor::sdk::kPythonWorkerMagic,
                                                               actor::sdk::kPythonWorkerCode));
    ASSERT_TRUE(built) << built.error().message;
    EXPECT_EQ(built->at("t").as_string(), "hello");
    EXPECT_FALSE(built->contains("code")) << json::serialize(*built);
}

// A cold start with a timeline (sandbox_bench --timeline): the steps each side marks are
// there, in the order they must happen in, on every backend.
TEST_P(WorkerTest, AColdStartWithATimelineMarksItsStepsInOrder) {
    using M = sandbox::StartMark;
    auto tl = sandbox::StartTimeline::create();
    ASSERT_TRUE(tl) << tl.error().message;
    for (const auto& [name, text] : {std::pair<std::string, std::string>{"d.py", kDouble},
                                     std::pair<std::string, std::string>{"d.js", kDoubleJs}}) {
        SCOPED_TRACE(name);
        auto spec = runtime::spec_from_file(write(name, text));
        ASSERT_TRUE(spec) << spec.error().message;
        runtime::LoadSpec load;
        load.metadata = spec->metadata;
        load.source = spec->source;
        load.filename = spec->filename;
        load.actor_id = spec->actor_id;
        (*tl)->clear();
        auto w = runtime::Worker::start(*owned_, load, std::chrono::seconds(30), std::nullopt,
                                        tl->get());
        ASSERT_TRUE(w) << w.error().message;
        auto r = (*w)->call(req({{"input", 21}}), {});
        ASSERT_TRUE(r) << r.error().message;
        // A second call marks nothing: the timeline ends with the first result.
        ASSERT_TRUE((*w)->call(req({{"input", 1}}), {}));
        w->reset();

        std::map<M, std::int64_t> at;
        std::map<M, int> times;
        for (const auto& e : (*tl)->entries()) {
            at[e.mark] = e.ns;
            ++times[e.mark];
        }
        for (const auto& [m, n] : times) EXPECT_EQ(n, 1) << sandbox::start_mark_name(m);
        auto before = [&](M a, M b) {
            ASSERT_TRUE(at.contains(a)) << "no mark " << sandbox::start_mark_name(a);
            ASSERT_TRUE(at.contains(b)) << "no mark " << sandbox::start_mark_name(b);
            EXPECT_LE(at[a], at[b])
                << sandbox::start_mark_name(a) << " after " << sandbox::start_mark_name(b);
        };
        // The runtime's side, on every backend.
        for (auto [a, b] : {std::pair{M::spawn_begin, M::hello_received},
                            {M::spawn_begin, M::load_sent},
                            {M::hello_received, M::loaded_received},
                            {M::loaded_received, M::call_sent},
                            {M::call_sent, M::result_received}})
            before(a, b);
        // The sandbox's pre-exec side and the worker's own clock, where they share the host's
        // clock (gVisor's kernel keeps its own, and runsc is the process the runtime starts).
        if (GetParam() == "gvisor") continue;
        for (auto [a, b] : {std::pair{M::spawn_begin, M::clone},
                            {M::clone, M::child_running},
                            {M::child_running, M::execve},
                            {M::execve, M::exec_reported},
                            {M::execve, M::interpreter_up},
                            {M::interpreter_up, M::sdk_ready},
                            {M::sdk_ready, M::hello_received},
                            {M::load_sent, M::load_received},
                            {M::sdk_ready, M::load_received},
                            {M::load_received, M::script_loaded},
                            {M::script_loaded, M::loaded_received},
                            {M::call_sent, M::call_received},
                            {M::call_received, M::result_sent},
                            {M::result_sent, M::result_received}})
            before(a, b);
        if (GetParam() == "namespace" || GetParam() == "landlock") {
            for (auto [a, b] :
                 {std::pair{M::child_running, M::worker_forked}, {M::worker_forked, M::execve}})
                before(a, b);
            if (GetParam() == "namespace") before(M::id_maps_written, M::child_released);
            const auto cgroups = sandbox::mech::detect_cgroup_support();
            if (std::any_of(cgroups.controllers.begin(), cgroups.controllers.end(),
                            [](const auto& c) { return c.usable(); }))
                before(M::child_running, M::cgroups_entered);
        }
    }
}

TEST_P(WorkerTest, RuntimeMetadataMustMatchTheStaticDeclaration) {
    // The literal says one thing, the code then changes it: the worker refuses.
    auto py = load(write("m.py", R"(__actor_metadata__ = {"component": "m", "outports": ["a"]}
__actor_metadata__["outports"].append("b")
def process(ctx):
    return None
)"));
    ASSERT_FALSE(py);
    EXPECT_NE(py.error().message.find("differs from the static declaration"), std::string::npos)
        << py.error().message;
    auto js = load(
        write("m.js",
              "const metadata = {component: 'm', outports: ['a']};\nmetadata.outports.push('b');\n"
              "function process(c) {}\n"));
    ASSERT_FALSE(js);
    EXPECT_NE(js.error().message.find("differs from the static declaration"), std::string::npos)
        << js.error().message;
}

TEST_P(WorkerTest, PrintsAreCapturedAsLogsAndDoNotCorruptTheChannel) {
    auto py = write("p.py", R"(import sys
@actor({"component": "p", "inports": ["n"], "outports": ["out"]})
def process(ctx):
    print("hello from print", {"not": "a frame"})
    sys.stdout.write("\x00\x00\x00\x05{}{}\n")
    print("to stderr", file=sys.stderr)
    for i in range(ctx.get_input("n")):
        print("x" * 100)
    ctx.log("via context", 1)
    return {"out": "ok"}
)");
    auto inst = must_load(py);
    ASSERT_TRUE(inst);
    Recorded rec;
    auto r = inst->call(req({{"n", 3}}), rec.events());
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->outputs.at("out"), json::value("ok"));
    auto has = [&](const std::string& s) {
        return std::find(rec.logs.begin(), rec.logs.end(), s) != rec.logs.end();
    };
    EXPECT_TRUE(has("hello from print {'not': 'a frame'}"));
    EXPECT_TRUE(has("to stderr"));
    EXPECT_TRUE(has("via context 1"));
    EXPECT_TRUE(has(std::string(100, 'x')));

    // Past the per-call cap the rest is dropped with one notice, and the worker goes on.
    Recorded big;
    auto r2 = inst->call(req({{"n", 20000}}), big.events());  // ~2 MB of prints
    ASSERT_TRUE(r2) << r2.error().message;
    std::size_t bytes = 0;
    for (const auto& l : big.logs) bytes += l.size() + 1;
    EXPECT_LE(bytes, limits::kMaxLogBytesPerCall + 200);
    EXPECT_NE(big.logs.back().find("the rest is dropped"), std::string::npos);
}

TEST_P(WorkerTest, JsConsoleOutputIsCaptured) {
    auto inst = must_load(write("p.js", R"(const metadata = {component: 'p', outports: ['out']};
async function process(ctx) {
    console.log('hello', 42);
    console.error('warned');
    return {out: 'ok'};
}
)"));
    ASSERT_TRUE(inst);
    Recorded rec;
    auto r = inst->call(req({}), rec.events());
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_NE(std::find(rec.logs.begin(), rec.logs.end(), "hello 42"), rec.logs.end());
    EXPECT_NE(std::find(rec.logs.begin(), rec.logs.end(), "warned"), rec.logs.end());
}

TEST_P(HostWorkerTest, WorkerKilledMidCallFailsTheCallAndTheNextCallGetsANewWorker) {
    auto py = write("k.py", R"(import os, time
@actor({"component": "k", "inports": ["hang"], "outports": ["pid", "n"]})
def process(ctx):
    n = ctx.get_state("n", 0) + 1
    ctx.set_state("n", n)
    if ctx.get_input("hang"):
        ctx.send_output("pid", os.getpid())
        time.sleep(60)
    return {"n": n}
)");
    auto js = write("k.js",
                    R"(const metadata = {component: 'k', inports: ['hang'], outports: ['pid', 'n']};
async function process(ctx) {
    const n = ctx.getState('n', 0) + 1;
    ctx.setState('n', n);
    if (ctx.getInput('hang')) {
        ctx.sendOutput('pid', require('process').pid);
        await new Promise((r) => setTimeout(r, 60000));
    }
    return {n};
}
)");
    for (const auto& script : {py, js}) {
        auto inst = must_load(script);
        ASSERT_TRUE(inst);
        Recorded rec;
        ASSERT_TRUE(inst->call(req({{"hang", false}}), rec.events()));  // n = 1 committed
        runtime::CallEvents ev;
        ev.on_output = [](std::string_view, const json::value& v) {
            ::kill(static_cast<pid_t>(v.as_int64()), SIGKILL);
        };
        auto r = inst->call(req({{"hang", true}}), ev);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code, Errc::worker_crashed);
        EXPECT_NE(r.error().message.find("killed by signal 9 (SIGKILL)"), std::string::npos)
            << r.error().message;
        auto next = inst->call(req({{"hang", false}}), rec.events());
        ASSERT_TRUE(next) << next.error().message;
        EXPECT_EQ(next->outputs.at("n"), json::value(2));  // from the last committed state
        EXPECT_EQ(inst->worker_starts(), 2u);
    }
}

TEST_P(WorkerTest, DeadlineKillsTheWorkerAndTheNextCallWorks) {
    auto inst = must_load(
        write("t.py", R"(@actor({"component": "t", "inports": ["spin"], "outports": ["ok"]})
def process(ctx):
    while ctx.get_input("spin"):
        pass
    return {"ok": True}
)"));
    ASSERT_TRUE(inst);
    Recorded rec;
    auto rq = req({{"spin", true}});
    rq.timeout = std::chrono::milliseconds(300);
    auto r = inst->call(rq, rec.events());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::timeout);
    EXPECT_EQ(r.error().data.at("limit").as_string(), "timeout");
    EXPECT_NE(r.error().message.find("300ms"), std::string::npos);
    auto ok = inst->call(req({{"spin", false}}), rec.events());
    ASSERT_TRUE(ok) << ok.error().message;
    EXPECT_EQ(inst->worker_starts(), 2u);
}

TEST_P(WorkerTest, AThousandCallsOnOneWorker) {
    for (auto [name, text] : {std::pair{"d.py", kDouble}, std::pair{"d.js", kDoubleJs}}) {
        auto inst = must_load(write(name, text));
        ASSERT_TRUE(inst);
        const pid_t pid = inst->worker_pid();
        for (int i = 0; i < 1000; ++i) {
            Recorded rec;
            auto r = inst->call(req({{"input", i}}), rec.events());
            ASSERT_TRUE(r) << r.error().message;
            ASSERT_EQ(rec.outputs.size(), 1u);
            ASSERT_EQ(rec.outputs[0].second, json::value(2 * i));
        }
        EXPECT_EQ(inst->worker_pid(), pid);
        EXPECT_EQ(inst->worker_starts(), 1u);
    }
}

// /proc/PID/stat's state letter and /proc/PID/status's voluntary context switches (how
// often the process's main thread went to sleep).
char process_state(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto paren = text.rfind(')');
    return paren != std::string::npos && paren + 2 < text.size() ? text[paren + 2] : '?';
}

// The interpreter's pid: the instance's process itself, or, in a namespace sandbox, the
// child of the sandbox's init.
pid_t interpreter_pid(pid_t pid) {
    const auto children = sandflow::testing::children_of(std::to_string(pid));
    return children.empty() ? pid : children.front();
}

long voluntary_switches(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("voluntary_ctxt_switches:", 0) == 0) return std::stol(line.substr(24));
    return -1;
}

// A worker waiting for its next call sleeps until that call's request arrives, and nothing
// else wakes it. (Blocked in read() on its channel socket, a worker was also woken, for
// nothing, when the host took in the result it had written: two context switches more per
// call.) Each result here is read only once the worker sleeps.
TEST_P(WorkerTest, AWaitingWorkerIsNotWokenWhenTheHostReadsWhatItWrote) {
    if (GetParam() == "gvisor")
        GTEST_SKIP() << "the interpreter runs on gVisor's kernel: the host has no process of "
                        "its own whose sleeps could be counted";
    constexpr int kCalls = 20;
    for (auto [name, text] : {std::pair{"d.py", kDouble}, std::pair{"d.js", kDoubleJs}}) {
        SCOPED_TRACE(name);
        auto inst = must_load(write(name, text));
        ASSERT_TRUE(inst);
        const pid_t pid = interpreter_pid(inst->worker_pid());
        long woken = 0;
        for (int i = 0; i < kCalls; ++i) {
            auto began = inst->begin(req({{"input", i}}), {}, false);
            ASSERT_TRUE(began && *began);
            // The result is there and the worker has gone back to waiting.
            pollfd p{inst->wait_fd(), POLLIN, 0};
            ASSERT_EQ(::poll(&p, 1, 20'000), 1);
            for (int tries = 0; process_state(pid) != 'S' && tries < 10'000; ++tries)
                std::this_thread::sleep_for(std::chrono::microseconds(100));
            ASSERT_EQ(process_state(pid), 'S');
            const long before = voluntary_switches(pid);
            std::optional<Result<runtime::CallOutcome>> r;
            while (!(r = inst->advance(20'000))) {
            }
            ASSERT_TRUE(*r) << (*r).error().message;
            // A worker woken by that read runs, finds nothing, and sleeps again at once.
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
            woken += voluntary_switches(pid) - before;
        }
        // One per call when the host's read wakes it; a stray wake-up of the runtime's own
        // (a V8 background task posted to the main thread) is tolerated.
        EXPECT_LE(woken, 2) << "the waiting worker was woken " << woken << " times in " << kCalls
                            << " calls";
    }
}

TEST_P(WorkerTest, PlainDefKeywordFormBytesAndReturnedPorts) {
    auto inst = must_load(
        write("b.py", R"(@actor(name="bytes_echo", inports=["data"], outports=["raw", "size"])
def process(ctx):
    data = ctx.get_input("data")
    assert isinstance(data, bytes), type(data)
    ctx.send_output("raw", data[::-1])
    return {"size": len(data)}
)"));
    ASSERT_TRUE(inst);
    Recorded rec;
    auto r = inst->call(req({{"data", {{"$bytes", "AAEC"}}}}), rec.events());  // 00 01 02
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->outputs.at("size"), json::value(3));
    ASSERT_EQ(rec.outputs.size(), 1u);
    EXPECT_EQ(rec.outputs[0].second, (json::object{{"$bytes", "AgEA"}}));  // 02 01 00

    auto js = must_load(write("b.js", R"(module.exports = {
    metadata: {component: 'bytes_js', inports: ['data'], outports: ['raw']},
    process: (ctx) => ({raw: Buffer.from(ctx.getInput('data')).reverse()}),
};
)"));
    ASSERT_TRUE(js);
    auto r2 = js->call(req({{"data", {{"$bytes", "AAEC"}}}}), rec.events());
    ASSERT_TRUE(r2) << r2.error().message;
    EXPECT_EQ(r2->outputs.at("raw"), (json::object{{"$bytes", "AgEA"}}));
}

TEST_P(WorkerTest, BadValuesAndPortsAreScriptErrors) {
    auto inst = must_load(
        write("v.py", R"(@actor({"component": "v", "inports": ["what"], "outports": ["out"]})
def process(ctx):
    what = ctx.get_input("what")
    if what == "port":
        ctx.send_output("nope", 1)
    if what == "value":
        ctx.send_output("out", object())
    if what == "nan":
        ctx.send_output("out", float("nan"))
    if what == "return":
        return [1, 2]
    if what == "circular":
        loop = {}
        loop["self"] = loop
        return {"out": loop}
    if what == "exit":
        raise SystemExit(3)
    return {"out": what}
)"));
    ASSERT_TRUE(inst);
    Recorded rec;
    for (const char* what : {"port", "value", "nan", "return", "circular", "exit"}) {
        auto r = inst->call(req({{"what", what}}), rec.events());
        ASSERT_FALSE(r) << what;
        EXPECT_EQ(r.error().code, Errc::script) << what << ": " << r.error().message;
        if (std::string_view(what) == "circular") {
            EXPECT_NE(r.error().message.find("Circular reference"), std::string::npos)
                << r.error().message;
        }
    }
    auto r = inst->call(req({{"what", "fine"}}), rec.events());
    ASSERT_TRUE(r);
    EXPECT_EQ(inst->worker_starts(), 1u);
    // Unknown and missing input ports are refused before the worker is called.
    auto unknown = inst->call(req({{"whatever", 1}}), rec.events());
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, Errc::invalid_argument);
    EXPECT_NE(unknown.error().message.find("declares inports [what]"), std::string::npos);
}

TEST_P(WorkerTest, ProtocolViolationKillsTheWorker) {
    auto inst = must_load(write("x.py", R"(import os
@actor({"component": "x", "inports": ["evil"], "outports": ["ok"]})
def process(ctx):
    if ctx.get_input("evil"):
        os.write(3, b"\x00\x00\x00\x03abc")
        import time; time.sleep(30)
    return {"ok": 1}
)"));
    ASSERT_TRUE(inst);
    Recorded rec;
    auto r = inst->call(req({{"evil", true}}), rec.events());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::worker_crashed);
    EXPECT_EQ(r.error().data.at("reason").as_string(), "protocol_violation");
    ASSERT_TRUE(inst->call(req({{"evil", false}}), rec.events()));
    EXPECT_EQ(inst->worker_starts(), 2u);
}

TEST_P(WorkerTest, JsProcessShadowingAndAsyncioScripts) {
    // `process` shadows Node's global inside the script; `require('process')` still works.
    auto js = must_load(write("sh.js", R"(const metadata = {component: 'sh', outports: ['pid']};
async function process(context) {
    await context.sendOutput('pid', typeof require('process').pid);
    return {kind: typeof process};
}
)"));
    ASSERT_TRUE(js);
    Recorded rec;
    auto r = js->call(req({}), rec.events());
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->outputs.at("kind"), json::value("function"));
    EXPECT_EQ(rec.outputs.at(0).second, json::value("number"));

    // A Python script that imports asyncio gets a real event loop.
    auto py = must_load(write("a.py", R"(import asyncio
@actor({"component": "a", "outports": ["out"]})
async def process(ctx):
    await asyncio.sleep(0.01)
    await ctx.send_output("out", 1)
    return {"done": True}
)"));
    ASSERT_TRUE(py);
    Recorded rec2;
    auto r2 = py->call(req({}), rec2.events());
    ASSERT_TRUE(r2) << r2.error().message;
    EXPECT_EQ(r2->outputs.at("done"), json::value(true));
}

// The JavaScript worker reads its channel on Node's event loop: frames larger than a
// socket buffer arrive in pieces both ways, and between calls the loop runs, so timers a
// call left behind fire while the worker waits.
TEST_P(WorkerTest, JsLargeFramesBothWaysAndTimersBetweenCalls) {
    auto js = must_load(write(
        "big.js",
        R"(const metadata = {component: 'big', inports: ['text'], outports: ['echo', 'ticks']};
let ticks = 0;
async function process(context) {
    const text = context.getInput('text');
    context.sendOutput('echo', text);
    setTimeout(() => { ticks += 1; }, 0);
    context.sendOutput('ticks', ticks);
    return {n: text.length};
}
)"));
    ASSERT_TRUE(js);
    for (const std::size_t size : {std::size_t{3}, std::size_t{4} << 20, std::size_t{5}}) {
        Recorded rec;
        const std::string text(size, 'y');
        auto r = js->call(req({{"text", text}}), rec.events());
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_EQ(r->outputs.at("n"), json::value(size));
        ASSERT_EQ(rec.outputs.size(), 2u);
        EXPECT_EQ(rec.outputs[0].second.as_string().size(), size);
    }
    // Idle for a moment: each earlier call's timer (due after 1 ms) fires meanwhile.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    Recorded rec;
    auto r = js->call(req({{"text", "z"}}), rec.events());
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_EQ(rec.outputs.size(), 2u);
    EXPECT_EQ(rec.outputs[1].second, json::value(3));
    EXPECT_EQ(js->worker_starts(), 1u);

    // An output sent after its call has ended reaches the host with the next call, which
    // fails; the call after that gets a new worker.
    auto late =
        must_load(write("late.js", R"(const metadata = {component: 'late', outports: ['out']};
async function process(context) {
    setTimeout(() => context.sendOutput('out', 'late'), 0);
    return {};
}
)"));
    ASSERT_TRUE(late);
    ASSERT_TRUE(late->call(req({}), {}));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto second = late->call(req({}), {});
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, Errc::worker_crashed) << second.error().message;
    EXPECT_TRUE(late->call(req({}), {}));
    EXPECT_EQ(late->worker_starts(), 2u);
}

// What a worker prints between calls is read then, under a budget of its own, so a script
// that prints more than a pipe holds is not stopped until the next call.
TEST_P(WorkerTest, BetweenCallsWhatTheWorkerPrintsIsRead) {
    auto inst = must_load(write("chatty.py", R"(import threading, time
@actor({"component": "chatty"})
def process(context):
    def talk():
        time.sleep(0.2)  # after the call has ended
        for i in range(300):
            print("x" * 1000)
        print("END", flush=True)
    threading.Thread(target=talk, daemon=True).start()
    return {}
)"));
    ASSERT_TRUE(inst);
    ASSERT_TRUE(inst->call(req({}), {}));
    auto seen_end = [&] {
        return std::find(load_logs_.begin(), load_logs_.end(), "END") != load_logs_.end();
    };
    auto ok = sandflow::testing::poll_idle_until(*inst, seen_end);
    ASSERT_TRUE(ok) << ok.error().message;
    ASSERT_TRUE(seen_end()) << load_logs_.size() << " lines read between calls";
    EXPECT_EQ(std::count(load_logs_.begin(), load_logs_.end(), std::string(1000, 'x')), 300);
    // The same worker serves the next call.
    EXPECT_TRUE(inst->call(req({}), {}));
    EXPECT_EQ(inst->worker_starts(), 1u);
}

// A frame between calls (here an output sent after its call ended) breaks the protocol: the
// worker is killed when it is seen, and the next call, which gets a new one, is not failed.
TEST_P(WorkerTest, BetweenCallsAFrameOrADeathCostsOnlyTheWorker) {
    auto late =
        must_load(write("late.js", R"(const metadata = {component: 'late', outports: ['out']};
async function process(context) {
    setTimeout(() => context.sendOutput('out', 'late'), 50);
    return {};
}
)"));
    ASSERT_TRUE(late);
    ASSERT_TRUE(late->call(req({}), {}));
    auto lost = sandflow::testing::poll_idle_until(*late, [] { return false; });
    ASSERT_FALSE(lost) << "no frame seen between calls";
    EXPECT_EQ(lost.error().code, Errc::worker_crashed) << lost.error().message;
    EXPECT_EQ(lost.error().data.at("reason"), "protocol_violation");
    EXPECT_NE(lost.error().message.find("between calls"), std::string::npos)
        << lost.error().message;
    EXPECT_EQ(late->worker_pid(), -1);
    EXPECT_TRUE(late->call(req({}), {}));
    EXPECT_EQ(late->worker_starts(), 2u);

    // A worker that dies between calls is reaped when that is seen.
    const pid_t pid = late->worker_pid();
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    lost = sandflow::testing::poll_idle_until(*late, [] { return false; });
    ASSERT_FALSE(lost) << "the death was not seen between calls";
    EXPECT_EQ(lost.error().code, Errc::worker_crashed) << lost.error().message;
    EXPECT_TRUE(sandflow::testing::process_gone(pid));
    EXPECT_TRUE(late->call(req({}), {}));
    EXPECT_EQ(late->worker_starts(), 3u);
}

TEST_P(WorkerTest, AWorkerThatDiedWhileIdleIsReplacedBeforeTheNextCall) {
    auto inst = must_load(write("d.py", kDouble));
    ASSERT_TRUE(inst);
    Recorded rec;
    ASSERT_TRUE(inst->call(req({{"input", 1}}), rec.events()));
    const pid_t pid = inst->worker_pid();
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    ASSERT_TRUE(sandflow::testing::wait_for_zombie(pid)) << "worker " << pid << " did not die";
    auto r = inst->call(req({{"input", 2}}), rec.events());
    ASSERT_TRUE(r) << r.error().message;  // no call is lost to the idle death
    EXPECT_EQ(inst->worker_starts(), 2u);
    EXPECT_NE(inst->worker_pid(), pid);
}

// Limits the worker driver enforces (runtime/actor_limits.hpp): crossing one kills the
// worker, names the limit and its value, and the next call runs in a new worker on the
// committed state.
constexpr const char* kNoisy =
    R"(@actor({"component": "noisy", "inports": ["mode", "n"], "outports": ["out"]})
async def process(ctx):
    mode = ctx.get_input("mode")
    n = ctx.get_input("n")
    if mode == "print":
        for i in range(n):
            print("y" * 1000)
    elif mode == "stream":
        for i in range(n):
            await ctx.send_output("out", "z" * 1000)
    elif mode == "big":
        await ctx.send_output("out", "w" * n)
    elif mode == "sleep":
        import time
        time.sleep(n)
    ctx.set_state("calls", (ctx.get_state("calls") or 0) + 1)
    return {"out": "done"}
)";

runtime::ActorLimits limits_with(runtime::LimitOverrides o) {
    auto l = runtime::apply_limits({}, o, runtime::default_maxima(), "test");
    EXPECT_TRUE(l) << (l ? "" : l.error().message);
    return l ? *l : runtime::ActorLimits{};
}

void expect_limit(const Result<runtime::CallOutcome>& r, std::string_view limit,
                  std::uint64_t value) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::limit_exceeded) << r.error().message;
    EXPECT_EQ(r.error().data.at("limit"), json::value(limit)) << r.error().message;
    EXPECT_EQ(r.error().data.at("value").to_number<std::uint64_t>(), value);
    EXPECT_NE(r.error().message.find(std::string(limit)), std::string::npos);
}

TEST_P(WorkerTest, OutputBytesPerCallCountLogsAndStreamedOutputs) {
    auto inst = must_load(write("n.py", kNoisy));
    ASSERT_TRUE(inst);
    Recorded rec;
    ASSERT_TRUE(inst->call(req({{"mode", "none"}, {"n", 0}}), rec.events()));
    const pid_t first = inst->worker_pid();

    runtime::LimitOverrides o;
    o.output_bytes = 100'000;
    for (const char* mode : {"print", "stream"}) {
        auto request = req({{"mode", mode}, {"n", 500}});  // ~500 kB either way
        request.limits = limits_with(o);
        Recorded r;
        expect_limit(inst->call(request, r.events()), "output_bytes", 100'000);
    }
    // Under the limit the same call passes, in a new worker, on the committed state.
    auto request = req({{"mode", "stream"}, {"n", 50}});
    request.limits = limits_with(o);
    Recorded ok;
    auto r = inst->call(request, ok.events());
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(ok.outputs.size(), 50u);
    EXPECT_EQ(r->state.at("calls"), json::value(2));
    EXPECT_NE(inst->worker_pid(), first);
}

TEST_P(WorkerTest, AFrameOverItsLimitIsALimitNotAProtocolViolation) {
    auto inst = must_load(write("n.py", kNoisy));
    ASSERT_TRUE(inst);
    runtime::LimitOverrides o;
    o.frame_bytes = 64 << 10;
    auto request = req({{"mode", "big"}, {"n", 200'000}});
    request.limits = limits_with(o);
    Recorded rec;
    expect_limit(inst->call(request, rec.events()), "frame_bytes", 64 << 10);
    Recorded next;
    EXPECT_TRUE(inst->call(req({{"mode", "big"}, {"n", 200'000}}), next.events()));
}

TEST_P(WorkerTest, TheInstancesLimitsApplyWhenACallBringsNone) {
    auto spec = runtime::spec_from_file(write("n.py", kNoisy));
    ASSERT_TRUE(spec);
    runtime::LimitOverrides o;
    o.timeout_ms = 300;
    spec->limits = limits_with(o);
    auto inst = runtime::Instance::create(*owned_, std::move(*spec));
    ASSERT_TRUE(inst) << inst.error().message;
    Recorded rec;
    const auto start = std::chrono::steady_clock::now();
    auto r = (*inst)->call(req({{"mode", "sleep"}, {"n", 20}}), rec.events());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::timeout);
    EXPECT_EQ(r.error().data.at("value_ms"), json::value(300));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));

    // A call's own limits replace the instance's for that call only.
    o.timeout_ms = 5000;
    auto longer = req({{"mode", "sleep"}, {"n", 1}});
    longer.limits = limits_with(o);
    EXPECT_TRUE((*inst)->call(longer, rec.events()));
    EXPECT_FALSE((*inst)->call(req({{"mode", "sleep"}, {"n", 1}}), rec.events()));
}

TEST_P(WorkerTest, OnStartSeesTheWorkerThatRunsTheCallAndCanStopIt) {
    auto inst = must_load(write("n.py", kNoisy));
    ASSERT_TRUE(inst);
    Recorded rec;
    ASSERT_TRUE(inst->call(req({{"mode", "none"}, {"n", 0}}), rec.events()));
    const pid_t first = inst->worker_pid();
    ASSERT_EQ(::kill(first, SIGKILL), 0);
    ASSERT_TRUE(sandflow::testing::wait_for_zombie(first));

    // The worker died idle: the call restarts it, and on_start names the new one.
    pid_t seen = -1;
    auto events = rec.events();
    events.on_start = [&](pid_t pid) {
        seen = pid;
        return true;
    };
    auto r = inst->call(req({{"mode", "none"}, {"n", 0}}), events);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_NE(seen, first);
    EXPECT_EQ(seen, inst->worker_pid());
    EXPECT_EQ(r->state.at("calls"), json::value(2));

    // Stopped there, the call never reaches the script: the state stays as it was.
    events.on_start = [](pid_t) { return false; };
    auto stopped = inst->call(req({{"mode", "none"}, {"n", 0}}), events);
    ASSERT_FALSE(stopped);
    EXPECT_EQ(stopped.error().code, Errc::cancelled) << stopped.error().message;
    EXPECT_EQ(inst->state().at("calls"), json::value(2));
    EXPECT_EQ(inst->worker_pid(), seen);  // nothing was killed
}

// Whatever descriptor the backend hands the channel on (none_stdin and gvisor: stdin).
TEST_P(WorkerTest, AWorkerSeesOnlyItsStandardDescriptorsTheChannelAndAnEmptyStdin) {
    auto inst = must_load(write("fds.py", sandflow::testing::kOpenFdsPy));
    ASSERT_TRUE(inst);
    Recorded rec;
    auto r = inst->call(req({}), rec.events());
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->outputs.at("open"), (json::array{0, 1, 2, 3}));
    EXPECT_EQ(r->outputs.at("stdin"), "");
    auto js = must_load(write("stdin.js", sandflow::testing::kStdinJs));
    ASSERT_TRUE(js);
    r = js->call(req({}), rec.events());
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->outputs.at("stdin"), "");
    EXPECT_TRUE(js->call(req({}), rec.events()));  // the channel still works
}

// The non-blocking form an event loop uses: begin(), then advance() each time the wait
// descriptor polls readable, and expire() at the deadline.
TEST_P(WorkerTest, ACallCanBeDrivenStepByStepFromTheWaitDescriptor) {
    auto inst = must_load(write(
        "steps.py",
        R"(@actor({"component": "steps", "inports": ["text", "spin"], "outports": ["tick", "n"]})
async def process(ctx):
    for i in range(3):
        await ctx.send_output("tick", i)
    while ctx.get_input("spin"):
        pass
    return {"n": len(ctx.get_input("text"))}
)"));
    ASSERT_TRUE(inst);
    // Polls the descriptor and steps until the call ends.
    auto drive = [&]() -> Result<runtime::CallOutcome> {
        for (;;) {
            pollfd p{inst->wait_fd(), POLLIN, 0};
            EXPECT_GE(::poll(&p, 1, 20'000), 0);
            if (auto r = inst->advance()) return std::move(*r);
        }
    };
    for (const std::size_t size : {std::size_t{5}, std::size_t{4} << 20}) {
        Recorded rec;
        // 4 MiB is more than a socket buffer takes at once: the rest goes as the worker reads.
        auto rq = req({{"text", std::string(size, 'x')}, {"spin", false}});
        auto ev = rec.events();
        auto began = inst->begin(std::move(rq), std::move(ev), false);
        ASSERT_TRUE(began) << began.error().message;
        ASSERT_TRUE(*began);
        auto r = drive();
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_EQ(r->outputs.at("n"), json::value(size));
        ASSERT_EQ(rec.outputs.size(), 3u);
        for (int i = 0; i < 3; ++i) EXPECT_EQ(rec.outputs[static_cast<std::size_t>(i)].second, i);
        EXPECT_FALSE(r->new_worker);
    }
    EXPECT_EQ(inst->worker_starts(), 1u);

    // The deadline: the owner of the loop calls expire(); the worker is killed.
    Recorded rec;
    auto rq = req({{"text", "x"}, {"spin", true}});
    rq.timeout = std::chrono::milliseconds(200);
    auto ev = rec.events();
    ASSERT_TRUE(*inst->begin(std::move(rq), std::move(ev), false));
    EXPECT_LE(inst->deadline(), runtime::Clock::now() + std::chrono::milliseconds(200));
    EXPECT_FALSE(inst->advance());  // still spinning
    auto timed_out = inst->expire();
    ASSERT_FALSE(timed_out);
    EXPECT_EQ(timed_out.error().code, Errc::timeout);

    // With its worker gone, a non-blocking begin does nothing and leaves the request as
    // it was; the blocking path starts a new worker.
    auto again = req({{"text", "abc"}, {"spin", false}});
    auto ev2 = rec.events();
    auto began = inst->begin(std::move(again), std::move(ev2), false);
    ASSERT_TRUE(began) << began.error().message;
    EXPECT_FALSE(*began);
    EXPECT_EQ(again.inputs.at("text"), "abc");
    auto ok = inst->call(again, rec.events());
    ASSERT_TRUE(ok) << ok.error().message;
    EXPECT_EQ(ok->outputs.at("n"), 3);
    EXPECT_TRUE(ok->new_worker);
}

INSTANTIATE_TEST_SUITE_P(Backends, WorkerTest,
                         ::testing::ValuesIn(sandflow::testing::worker_backends()),
                         sandflow::testing::backend_test_name);
INSTANTIATE_TEST_SUITE_P(Backends, HostWorkerTest, ::testing::Values("none"),
                         sandflow::testing::backend_test_name);
