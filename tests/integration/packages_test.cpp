// Package sets (docs/actors.md#packages) with real packages: Debian's python3-yaml and
// python3-numpy (the `system` set, installed by `make deps`), and an npm package that
// `make deps` installs into tests/data/npm/node_modules from npm's registry. Each actor runs
// sandboxed on every isolating backend this host runs (or SANDFLOW_TEST_BACKEND's), and on
// the default one (`auto`). A test whose packages are missing says so and is skipped.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "actor/package_sets.hpp"
#include "runtime/instance.hpp"
#include "runtime/warm_pool.hpp"
#include "support/worker_support.hpp"

using namespace sandflow;
namespace fs = std::filesystem;

namespace {

constexpr const char* kDebianPython = "/usr/lib/python3/dist-packages";
const fs::path kNpmSet = fs::path(SANDFLOW_SOURCE_DIR) / "tests/data/npm/node_modules";

constexpr const char* kNumpyYaml = R"PY(import numpy as np
import yaml

@actor({"component": "stats", "inports": ["doc"], "outports": ["sum", "numpy"],
        "requires": ["yaml", "numpy>=1.24"]})
def process(context):
    doc = yaml.safe_load(context.get_input("doc"))
    return {"sum": float(np.asarray(doc["xs"], dtype=float).sum()), "numpy": np.__version__}
)PY";

constexpr const char* kMs = R"JS(const ms = require('ms');
const metadata = { component: 'duration', inports: ['text'], outports: ['ms'],
                   requires: ['ms@^2.1'] };
async function process(context) {
    return { ms: ms(context.getInput('text')) };
}
)JS";

bool has_debian_packages() {
    return fs::exists(fs::path(kDebianPython) / "yaml") &&
           fs::exists(fs::path(kDebianPython) / "numpy");
}
// "3.11": what /usr/bin/python3 links to (python3.11), as the local sets' layout names it.
std::string python_version() {
    char buf[64] = {};
    const ssize_t n = ::readlink("/usr/bin/python3", buf, sizeof buf - 1);
    return n > 6 ? std::string(buf + 6, static_cast<std::size_t>(n) - 6) : std::string();
}

bool has_npm_set() {
    return fs::exists(kNpmSet / "ms" / "package.json");
}

class Folder {
  public:
    Folder() {
        char tmpl[] = "/tmp/sandflow-packages-XXXXXX";
        path_ = ::mkdtemp(tmpl) ? tmpl : "";
        // Sandboxes run as users of their own: a package set must be open to others.
        if (!path_.empty()) ::chmod(path_.c_str(), 0755);
    }
    ~Folder() {
        std::error_code ec;
        if (!path_.empty()) fs::remove_all(path_, ec);
    }
    const fs::path& path() const { return path_; }
    fs::path write(const fs::path& rel, std::string_view text) const {
        fs::create_directories((path_ / rel).parent_path());
        std::ofstream(path_ / rel) << text;
        return path_ / rel;
    }

  private:
    fs::path path_;
};

std::shared_ptr<const actor::PackageCatalog> catalog(const std::vector<std::string>& args,
                                                     bool local = false) {
    auto c = actor::PackageCatalog::create(args, local);
    EXPECT_TRUE(c) << c.error().message;
    return c ? *c : nullptr;
}

// The instance of `script` with its packages from `sets`, or the error of its load.
Result<std::unique_ptr<runtime::Instance>> load(sandbox::Backend& backend, const fs::path& script,
                                                const actor::PackageCatalog& sets,
                                                runtime::WarmPool* pool = nullptr) {
    auto spec = runtime::spec_from_file(script);
    if (!spec) return tl::unexpected(spec.error());
    if (auto ok = runtime::resolve_packages(*spec, sets, true); !ok)
        return tl::unexpected(ok.error());
    spec->on_log = [](const runtime::LogLine&) {};
    spec->pool = pool;
    return runtime::Instance::create(backend, std::move(*spec));
}

json::object call(runtime::Instance& inst, json::object inputs) {
    auto r = inst.call(sandflow::testing::call_request(std::move(inputs)), {});
    EXPECT_TRUE(r) << r.error().message;
    return r ? r->outputs : json::object{};
}

class PackagesOnBackend : public ::testing::TestWithParam<std::string> {};

TEST_P(PackagesOnBackend, PythonActorImportsNumpyAndYamlFromTheSystemSet) {
    if (!has_debian_packages())
        GTEST_SKIP() << "python3-yaml and python3-numpy are not installed (make deps installs "
                        "them)";
    auto backend = sandflow::testing::backend_for_test(GetParam());
    if (!backend) return;
    Folder dir;
    const auto script = dir.write("stats.py", kNumpyYaml);
    auto sets = catalog({"system"});
    ASSERT_TRUE(sets);
    auto inst = load(*backend, script, *sets);
    ASSERT_TRUE(inst) << inst.error().message;
    const auto& res = (*inst)->packages().resolutions;
    ASSERT_EQ(res.size(), 2u);
    EXPECT_EQ(res[0].package, "PyYAML");
    EXPECT_EQ(res[1].package, "numpy");
    EXPECT_EQ(res[1].set, "system");
    auto out = call(**inst, {{"doc", "xs: [1, 2, 3.5]"}});
    EXPECT_EQ(out["sum"], 6.5);
    EXPECT_EQ(out["numpy"],
              json::value(res[1].version));  // the version the load found is the one imported
    // Imported at load, once: the next call only calls.
    out = call(**inst, {{"doc", "xs: [10, 20]"}});
    EXPECT_EQ(out["sum"], 30.0);
    EXPECT_EQ((*inst)->worker_starts(), 1u);
}

TEST_P(PackagesOnBackend, JsActorRequiresAnNpmPackage) {
    if (!has_npm_set())
        GTEST_SKIP() << kNpmSet << " is missing: make deps installs it from npm's registry";
    auto backend = sandflow::testing::backend_for_test(GetParam());
    if (!backend) return;
    Folder dir;
    const auto script = dir.write("duration.js", kMs);
    auto sets = catalog({"npm=" + kNpmSet.string()});
    ASSERT_TRUE(sets);
    auto inst = load(*backend, script, *sets);
    ASSERT_TRUE(inst) << inst.error().message;
    ASSERT_EQ((*inst)->packages().resolutions.size(), 1u);
    EXPECT_EQ((*inst)->packages().resolutions[0].version, "2.1.3");
    EXPECT_EQ(call(**inst, {{"text", "2 days"}})["ms"], 172'800'000);
}

TEST_P(PackagesOnBackend, PackagesBesideTheScriptOnlyWhenTheOperatorAllowsThem) {
    auto backend = sandflow::testing::backend_for_test(GetParam());
    if (!backend) return;
    Folder dir;
    // A Python package in PEP 582's layout for the sandbox's interpreter, and a JS one in npm's.
    const std::string version = python_version();
    ASSERT_FALSE(version.empty()) << "/usr/bin/python3 does not link to python3.X";
    dir.write("__pypackages__/" + version + "/lib/greeting/__init__.py",
              "def hello(n):\n    return 'hello ' + n\n");
    dir.write("node_modules/shout/package.json", R"({"name": "shout", "version": "1.0.0"})");
    dir.write("node_modules/shout/index.js", "module.exports = (s) => s.toUpperCase() + '!';\n");
    const auto py = dir.write("greet.py", R"PY(import greeting
@actor({"component": "greet", "inports": ["n"], "outports": ["out"], "requires": ["greeting"]})
def process(context):
    return {"out": greeting.hello(context.get_input("n"))}
)PY");
    const auto js = dir.write("shout.js", R"JS(const shout = require('shout');
const metadata = { component: 'shout', inports: ['s'], outports: ['out'], requires: ['shout'] };
async function process(context) { return { out: shout(context.getInput('s')) }; }
)JS");
    // Not allowed: the requirement is missing, named with the fix.
    auto none = catalog({});
    ASSERT_TRUE(none);
    auto refused = load(*backend, py, *none);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, Errc::requirement);
    EXPECT_NE(refused.error().message.find("greeting"), std::string::npos);
    // Allowed: each resolves in the set named `local`, and runs.
    auto local = catalog({}, true);
    ASSERT_TRUE(local);
    auto p = load(*backend, py, *local);
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ((*p)->packages().resolutions.at(0).set, "local");
    EXPECT_EQ(call(**p, {{"n", "sandbox"}})["out"], "hello sandbox");
    auto j = load(*backend, js, *local);
    ASSERT_TRUE(j) << j.error().message;
    EXPECT_EQ(call(**j, {{"s", "hey"}})["out"], "HEY!");
}

std::vector<std::string> backends() {
    auto v = sandflow::testing::isolating_backends_for_test();
    if (std::find(v.begin(), v.end(), "auto") == v.end()) v.push_back("auto");
    return v;
}

INSTANTIATE_TEST_SUITE_P(Backends, PackagesOnBackend, ::testing::ValuesIn(backends()),
                         sandflow::testing::backend_test_name);

// ---- what fails, and how it says so (nothing is started) ---------------------------------

TEST(PackageRequirements, AMissingPackageFailsTheLoadNamingItTheSetsAndTheFix) {
    sandbox::NoneBackend backend;
    Folder dir;
    const auto script = dir.write("needs.py", R"PY(import nosuchpackage
@actor({"component": "needs", "requires": ["nosuchpackage>=2"]})
def process(context):
    return {}
)PY");
    // No sets at all: the message says how to give one.
    auto r = runtime::Instance::create(backend, *runtime::spec_from_file(script));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::requirement);
    EXPECT_NE(r.error().message.find("nosuchpackage>=2"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("--packages"), std::string::npos) << r.error().message;
    // A set that lacks it: the set is named, with its folder.
    Folder set;
    set.write("other/__init__.py", "");
    auto sets = catalog({"mine=" + set.path().string()});
    ASSERT_TRUE(sets);
    r = load(backend, script, *sets);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::requirement);
    EXPECT_NE(r.error().message.find("'mine' (" + set.path().string() + ")"), std::string::npos)
        << r.error().message;
    EXPECT_EQ(r.error().data.at("package"), "nosuchpackage");
    // There in a version outside the range: the version found is named.
    set.write("nosuchpackage-1.5.dist-info/METADATA", "Name: nosuchpackage\nVersion: 1.5\n");
    sets = catalog({"mine=" + set.path().string()});
    ASSERT_TRUE(sets);
    r = load(backend, script, *sets);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("version 1.5 of nosuchpackage"), std::string::npos)
        << r.error().message;
}

TEST(PackageRequirements, AnActorNamingASetTheRuntimeLacksIsToldHowToAddIt) {
    sandbox::NoneBackend backend;
    Folder dir;
    const auto script =
        dir.write("picky.py", R"PY(@actor({"component": "picky", "packages": ["science"]})
def process(context):
    return {}
)PY");
    auto sets = catalog({});
    ASSERT_TRUE(sets);
    auto r = load(backend, script, *sets);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::requirement);
    EXPECT_NE(r.error().message.find("--packages science=PATH"), std::string::npos)
        << r.error().message;
}

TEST(PackageCatalog, BadArgumentsSayWhatIsWrong) {
    Folder dir;
    fs::create_directories(dir.path() / "node_modules");
    for (const std::string& bad :
         {std::string("nameonly"), "=" + dir.path().string(), "bad name=" + dir.path().string(),
          "system=" + dir.path().string(), "local=" + dir.path().string(),
          "x=" + (dir.path() / "missing").string()}) {
        auto c = actor::PackageCatalog::create({bad}, false);
        ASSERT_FALSE(c) << bad;
        EXPECT_EQ(c.error().code, Errc::invalid_argument);
        EXPECT_NE(c.error().message.find("--packages " + bad), std::string::npos)
            << c.error().message;
    }
    // The same name twice for one language is refused; a node_modules folder is JavaScript.
    auto twice = actor::PackageCatalog::create(
        {"a=" + dir.path().string(), "a=" + dir.path().string()}, false);
    EXPECT_FALSE(twice);
    auto both = actor::PackageCatalog::create(
        {"a=" + dir.path().string(), "a=" + (dir.path() / "node_modules").string()}, false);
    ASSERT_TRUE(both) << both.error().message;
    EXPECT_EQ((*both)->sets().at(0).language, actor::Language::python);
    EXPECT_EQ((*both)->sets().at(1).language, actor::Language::javascript);
}

TEST(PackageCatalog, ALocalFolderThatLinksOutOfTheScriptsFolderIsNotASet) {
    Folder outside, dir;
    outside.write("evil/__init__.py", "");
    fs::create_directories(dir.path() / ".venv" / "lib");
    const std::string version = python_version();
    ASSERT_FALSE(version.empty());
    fs::create_directories(dir.path() / ".venv" / "lib" / ("python" + version));
    fs::create_directory_symlink(
        outside.path(), dir.path() / ".venv" / "lib" / ("python" + version) / "site-packages");
    const auto script = dir.write("s.py", R"PY(@actor({"component": "s", "requires": ["evil"]})
def process(context):
    return {}
)PY");
    auto meta = actor::inspect_file(script.string());
    ASSERT_TRUE(meta);
    auto sets = catalog({}, true);
    ASSERT_TRUE(sets);
    auto r = sets->for_actor(*meta, actor::Language::python, script);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::requirement);
}

// ---- the warm pool keeps its speed with package sets -------------------------------------

TEST(PackagesPool, InstancesWithSetsStartFromThePoolOnePoolPerListOfSets) {
    auto backend = sandflow::testing::backend_for_test("auto");
    if (!backend) return;
    Folder a, b, dir;
    a.write("alpha/__init__.py", "NAME = 'alpha'\n");
    b.write("beta/__init__.py", "NAME = 'beta'\n");
    auto sets = catalog({"a=" + a.path().string(), "b=" + b.path().string()});
    ASSERT_TRUE(sets);
    runtime::PoolOptions po;
    po.python = 1;
    po.node = 0;
    po.python_packages = runtime::default_package_dirs(*sets, actor::Language::python);
    auto pool = runtime::WarmPool::create(*backend, po);
    ASSERT_TRUE(pool) << pool.error().message;
    ASSERT_TRUE((*pool)->wait_full(runtime::Clock::now() + std::chrono::seconds(30)));
    // Every set (the actor names none): the default queue.
    const auto both = dir.write("both.py", R"PY(import alpha, beta
@actor({"component": "both", "outports": ["out"], "requires": ["alpha", "beta"]})
def process(context):
    return {"out": alpha.NAME + beta.NAME}
)PY");
    auto i1 = load(*backend, both, *sets, pool->get());
    ASSERT_TRUE(i1) << i1.error().message;
    EXPECT_EQ((*i1)->pooled_starts(), 1u);
    EXPECT_EQ(call(**i1, {})["out"], "alphabeta");
    // One set: a list of its own, started cold the first time, then pooled.
    const auto one = dir.write("one.py", R"PY(import beta
@actor({"component": "one", "outports": ["out", "alpha"], "packages": ["b"]})
def process(context):
    try:
        import alpha
        seen = True
    except ImportError:
        seen = False
    return {"out": beta.NAME, "alpha": seen}
)PY");
    auto i2 = load(*backend, one, *sets, pool->get());
    ASSERT_TRUE(i2) << i2.error().message;
    EXPECT_EQ((*i2)->pooled_starts(), 0u);
    auto out = call(**i2, {});
    EXPECT_EQ(out["out"], "beta");
    EXPECT_EQ(out["alpha"], false) << "a set the actor does not draw from is not mounted";
    ASSERT_TRUE((*pool)->wait_full(runtime::Clock::now() + std::chrono::seconds(30)));
    EXPECT_EQ((*pool)->stats().python.package_lists, 2u);
    auto i3 = load(*backend, one, *sets, pool->get());
    ASSERT_TRUE(i3) << i3.error().message;
    EXPECT_EQ((*i3)->pooled_starts(), 1u);
    EXPECT_EQ(call(**i3, {})["out"], "beta");
}

}  // namespace
