// The sandflow binary: inspect, exec, help and exit statuses, on the shipped examples.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/json.hpp"
#include "sandbox/backend.hpp"
#include "support/test_support.hpp"

using namespace sandflow;
namespace fs = std::filesystem;

namespace {

using sandflow::testing::json_lines;
using sandflow::testing::run_cli;

std::string example(const std::string& rel) {
    return std::string(SANDFLOW_SOURCE_DIR) + "/examples/actors/" + rel;
}

}  // namespace

TEST(Cli, InspectPrintsMetadata) {
    auto r = run_cli({"inspect", example("python/double.actor.py")});
    ASSERT_EQ(r.status, 0) << r.err;
    auto j = parse_json(r.out, "inspect output");
    ASSERT_TRUE(j) << r.out;
    EXPECT_EQ(j->at("component").as_string(), "double");
    EXPECT_EQ(j->at("language").as_string(), "python");
    EXPECT_EQ(j->at("inports").as_array().at(0).at("name").as_string(), "input");

    auto js = run_cli({"inspect", example("js/normalize_record.actor.js")});
    ASSERT_EQ(js.status, 0) << js.err;
    EXPECT_EQ(parse_json(js.out, "x")->at("component").as_string(), "normalize_record_js");
}

TEST(Cli, InspectErrorNamesFileLineColumn) {
    const fs::path p = fs::temp_directory_path() / "sandflow-cli-broken.py";
    std::ofstream(p) << "# an actor\n@actor({\"component\": \"x\",\n         \"inports\": [\"a\" "
                        "\"b\",, ]})\ndef process(c):\n    pass\n";
    auto r = run_cli({"inspect", p.string()});
    EXPECT_EQ(r.status, 2);
    EXPECT_TRUE(r.out.empty());
    EXPECT_NE(r.err.find(p.string() + ":3:"), std::string::npos) << r.err;
    fs::remove(p);

    auto missing = run_cli({"inspect", "/nonexistent/actor.py"});
    EXPECT_EQ(missing.status, 2) << missing.err;
    EXPECT_NE(missing.err.find("/nonexistent/actor.py"), std::string::npos);
}

// --packages on inspect and exec (docs/actors.md#packages), with Debian's python3-yaml.
TEST(Cli, PackagesAreResolvedByInspectAndGivenToExec) {
    if (!fs::exists("/usr/lib/python3/dist-packages/yaml"))
        GTEST_SKIP() << "python3-yaml is not installed (make deps installs it)";
    const fs::path p = fs::temp_directory_path() / "sandflow-cli-yaml.py";
    std::ofstream(p) << "import yaml\n@actor({\"component\": \"y\", \"inports\": [\"doc\"], "
                        "\"outports\": [\"n\"], \"requires\": [\"yaml>=5\"]})\n"
                        "def process(c):\n    return {\"n\": len(yaml.safe_load(c.get_input("
                        "\"doc\")))}\n";
    // Without the set: the load error names the package and the flag, exit status 2.
    auto missing = run_cli({"exec", p.string(), "--input", "doc=\"[1, 2]\""});
    EXPECT_EQ(missing.status, 2) << missing.err;
    EXPECT_NE(missing.err.find("requires yaml>=5"), std::string::npos) << missing.err;
    EXPECT_NE(missing.err.find("--packages system"), std::string::npos) << missing.err;
    auto unresolved = run_cli({"inspect", p.string()});
    EXPECT_EQ(unresolved.status, 2);
    auto u = parse_json(unresolved.out, "inspect output");
    ASSERT_TRUE(u) << unresolved.out;
    EXPECT_EQ(u->at("unresolved").at("code"), "requirement");
    // With it: inspect says where it resolves, exec runs it sandboxed.
    auto inspected = run_cli({"inspect", p.string(), "--packages", "system"});
    ASSERT_EQ(inspected.status, 0) << inspected.err;
    auto j = parse_json(inspected.out, "inspect output");
    ASSERT_TRUE(j) << inspected.out;
    const auto& resolved = j->at("packages").at("resolved").as_array().at(0);
    EXPECT_EQ(resolved.at("package"), "PyYAML");
    EXPECT_EQ(resolved.at("set"), "system");
    auto ran = run_cli({"exec", p.string(), "--input", "doc=\"[1, 2]\"", "--packages", "system"});
    EXPECT_EQ(ran.status, 0) << ran.err;
    EXPECT_NE(ran.out.find("\"n\":2"), std::string::npos) << ran.out;
    // A malformed --packages is a usage error that shows the accepted forms.
    auto bad = run_cli({"exec", p.string(), "--packages", "nosuchfolder"});
    EXPECT_EQ(bad.status, 2);
    EXPECT_NE(bad.err.find("NAME=PATH"), std::string::npos) << bad.err;
    fs::remove(p);
}

TEST(Cli, ExecRefusesToRunWithoutASandboxUnlessAllowed) {
    auto r = run_cli(
        {"exec", example("python/double.actor.py"), "--input", "input=21", "--backend", "none"});
    EXPECT_EQ(r.status, 3);
    EXPECT_NE(r.err.find("--insecure-no-sandbox"), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty());
}

TEST(Cli, DoctorPrintsEachBackendWhatAutoPicksAndEachMechanism) {
    auto r = run_cli({"doctor"});
    for (const char* m :
         {"namespace  os", "landlock   process", "auto (level process) -> ", "auto (level os) -> ",
          "auto (level kernel) -> ", "user namespace", "pid namespace", "mount namespace",
          "network namespace", "seccomp-bpf", "Landlock", "cgroup memory limit",
          "namespace sandbox (end to end)", "sandbox uids (landlock tier)",
          "landlock sandbox (end to end)", "/usr/bin/python3 in the sandbox"})
        EXPECT_NE(r.out.find(m), std::string::npos) << m << "\n" << r.out;
    // Exit status 0 exactly when auto finds a backend at the default level, and the line
    // names the one the sandbox layer picks.
    auto pick = sandbox::select_backend(sandbox::IsolationLevel::process);
    if (!pick) {
        EXPECT_EQ(r.status, 3) << r.out;
        GTEST_SKIP() << "no isolating backend can run here:\n" << r.out;
    }
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("auto (level process) -> " + pick->backend), std::string::npos) << r.out;
}

TEST(Cli, ExecRunsInTheNamespaceSandboxByDefault) {
    auto r = run_cli({"exec", example("python/double.actor.py"), "--input", "input=21"});
    if (r.status == 3 && r.err.find("no sandbox backend that meets") != std::string::npos)
        GTEST_SKIP() << "the namespace sandbox cannot run here: " << r.err;
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err.find("INSECURE"), std::string::npos) << r.err;
    auto lines = json_lines(r.out);
    ASSERT_EQ(lines.size(), 2u) << r.out;
    EXPECT_EQ(lines[0], (json::object{{"port", "output"}, {"data", 42}}));
}

TEST(Cli, ExecStreamsOutputsThenTheResult) {
    for (const char* script : {"python/double.actor.py", "js/double.actor.js"}) {
        auto r = run_cli({"exec", example(script), "--input", "input=21", "--backend", "none",
                          "--insecure-no-sandbox"});
        ASSERT_EQ(r.status, 0) << r.err;
        EXPECT_NE(r.err.find("INSECURE"), std::string::npos) << r.err;
        auto lines = json_lines(r.out);
        ASSERT_EQ(lines.size(), 2u) << r.out;
        EXPECT_EQ(lines[0], (json::object{{"port", "output"}, {"data", 42}}));
        const auto& result = lines[1].at("result").as_object();
        EXPECT_EQ(result.at("outputs"), (json::object{{"status", "completed"}}));
        EXPECT_TRUE(result.at("duration_us").is_int64());
    }
}

TEST(Cli, ExecRepeatKeepsStateOnOneWorker) {
    auto r =
        run_cli({"exec", example("python/running_stats.actor.py"), "--input", "value=4", "--repeat",
                 "3", "--state", R"({"stats": {"count": 1, "sum": 2, "min": 2, "max": 2}})",
                 "--insecure-no-sandbox"});
    ASSERT_EQ(r.status, 0) << r.err;
    auto lines = json_lines(r.out);
    ASSERT_EQ(lines.size(), 6u) << r.out;
    EXPECT_EQ(lines[4].at("data").at("count").as_int64(), 4);
    EXPECT_EQ(lines[5].at("result").at("state").at("stats").at("sum").as_int64(), 14);
}

TEST(Cli, ExecStreamsSeveralOutputsInOrder) {
    auto r = run_cli({"exec", example("js/chunker.actor.js"), "--input", "items=[1,2,3,4,5]",
                      "--config", R"({"size": 2})", "--insecure-no-sandbox"});
    ASSERT_EQ(r.status, 0) << r.err;
    auto lines = json_lines(r.out);
    ASSERT_EQ(lines.size(), 7u) << r.out;
    EXPECT_EQ(lines[0].at("data"), (json::array{1, 2}));
    EXPECT_EQ(lines[2].at("data"), (json::array{3, 4}));
    EXPECT_EQ(lines[4].at("data"), (json::array{5}));
    EXPECT_EQ(lines[5].at("data").at("sent").as_int64(), 5);
    EXPECT_EQ(lines[6].at("result").at("outputs").at("done").at("chunks").as_int64(), 3);
    EXPECT_NE(r.err.find("chunked 5 items"), std::string::npos) << r.err;
}

TEST(Cli, ScriptErrorExitsOneWithTraceback) {
    auto r = run_cli({"exec", example("python/validate_order.actor.py"), "--input",
                      R"(order={"id": "A7", "quantity": 0})", "--insecure-no-sandbox"});
    EXPECT_EQ(r.status, 1) << r.err;
    auto lines = json_lines(r.out);
    ASSERT_EQ(lines.size(), 1u);
    const auto& err = lines[0].at("error").as_object();
    EXPECT_EQ(err.at("code").as_string(), "script");
    EXPECT_EQ(err.at("data").at("type").as_string(), "ValueError");
    EXPECT_EQ(err.at("data").at("traceback").as_array().back().at("line").as_int64(), 18);
    EXPECT_NE(r.err.find("Traceback"), std::string::npos);
}

TEST(Cli, BadInputsAreUsageErrors) {
    auto r = run_cli({"exec", example("python/double.actor.py"), "--input", "input=hello",
                      "--insecure-no-sandbox"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("needs JSON quotes"), std::string::npos) << r.err;
    r = run_cli(
        {"exec", example("python/double.actor.py"), "--input", "nope=1", "--insecure-no-sandbox"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("unknown input port 'nope'"), std::string::npos) << r.err;
    r = run_cli(
        {"exec", example("python/double.actor.py"), "--timeout", "5", "--insecure-no-sandbox"});
    EXPECT_EQ(r.status, 2);
    r = run_cli(
        {"exec", example("python/double.actor.py"), "--config", "[1]", "--insecure-no-sandbox"});
    EXPECT_EQ(r.status, 2);
    r = run_cli({"exec"});
    EXPECT_EQ(r.status, 2);
    r = run_cli({"frobnicate"});
    EXPECT_EQ(r.status, 2);
}

TEST(Cli, TimeoutExitsThree) {
    const fs::path p = fs::temp_directory_path() / "sandflow-cli-spin.py";
    std::ofstream(p)
        << "@actor({\"component\": \"spin\"})\ndef process(c):\n    while True:\n        pass\n";
    auto r = run_cli({"exec", p.string(), "--timeout", "200ms", "--insecure-no-sandbox"});
    EXPECT_EQ(r.status, 3) << r.err;
    auto lines = json_lines(r.out);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0].at("error").at("code").as_string(), "timeout");
    fs::remove(p);
}

TEST(Cli, HelpForEverySubcommand) {
    for (const char* sub : {"inspect", "exec"}) {
        auto r = run_cli({sub, "--help"});
        EXPECT_EQ(r.status, 0);
        EXPECT_NE(r.out.find("SCRIPT"), std::string::npos) << r.out;
    }
    auto r = run_cli({"--help"});
    EXPECT_EQ(r.status, 0);
    EXPECT_NE(r.out.find("Exit statuses"), std::string::npos);
    auto exec = run_cli({"exec", "--help"});
    for (const char* opt :
         {"--input", "--config", "--state", "--repeat", "--timeout", "--insecure-no-sandbox"})
        EXPECT_NE(exec.out.find(opt), std::string::npos) << opt;
}
