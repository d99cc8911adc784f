// Requirements and package sets (src/actor/requirements.hpp): parsing both languages'
// forms, version ranges, and resolving against folders laid out as pip, Debian and npm lay
// them out.
#include "actor/requirements.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

using namespace sandflow;
using namespace sandflow::actor;
namespace fs = std::filesystem;

namespace {

bool satisfies(std::string_view req, std::string_view version, Language lang) {
    auto r = parse_requirement(req, lang);
    EXPECT_TRUE(r) << req << ": " << r.error().message;
    auto v = Version::parse(version);
    EXPECT_TRUE(v) << version;
    return r && v && r->matches(*v);
}

class PackageFolder : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/sandflow-packages-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { fs::remove_all(dir_); }
    void file(const fs::path& rel, const std::string& text) {
        fs::create_directories((dir_ / rel).parent_path());
        std::ofstream(dir_ / rel) << text;
    }
    fs::path dir_;
};

}  // namespace

TEST(Requirements, VersionsCompareBySegmentsWithPreReleasesFirst) {
    auto v = [](const char* s) { return *Version::parse(s); };
    EXPECT_LT(v("1.9").compare(v("1.24")), 0);
    EXPECT_EQ(v("1.2").compare(v("1.2.0")), 0);
    EXPECT_LT(v("1.0rc1").compare(v("1.0")), 0);
    EXPECT_LT(v("1.0.0-beta.2").compare(v("1.0.0")), 0);
    EXPECT_EQ(v("1.0.post1").compare(v("1.0")), 0);
    EXPECT_EQ(v("v2.1.0+build.5").compare(v("2.1")), 0);
    EXPECT_FALSE(Version::parse("latest"));
    EXPECT_FALSE(Version::parse(""));
}

TEST(Requirements, PythonForms) {
    const auto py = Language::python;
    EXPECT_TRUE(satisfies("numpy", "1.24.2", py));
    EXPECT_TRUE(satisfies("numpy>=1.24", "1.24.2", py));
    EXPECT_FALSE(satisfies("numpy>=1.25", "1.24.2", py));
    EXPECT_TRUE(satisfies("numpy >= 1, < 2", "1.24.2", py));
    EXPECT_FALSE(satisfies("numpy>=1,<1.24", "1.24.2", py));
    EXPECT_TRUE(satisfies("PyYAML==6.*", "6.0", py));
    EXPECT_FALSE(satisfies("PyYAML==5.*", "6.0", py));
    EXPECT_TRUE(satisfies("x~=1.4", "1.9", py));
    EXPECT_FALSE(satisfies("x~=1.4", "2.0", py));
    EXPECT_TRUE(satisfies("x~=1.4.2", "1.4.9", py));
    EXPECT_FALSE(satisfies("x~=1.4.2", "1.5.0", py));
    EXPECT_FALSE(satisfies("x!=1.3", "1.3.0", py));
    auto r = parse_requirement("jsonschema>=4.10.3", py);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->name, "jsonschema");
    ASSERT_EQ(r->clauses.size(), 1u);
    EXPECT_EQ(r->clauses[0].op, VersionOp::ge);
    for (const char* bad : {"", "numpy>=", "numpy^1.2", "numpy>=abc", "-numpy", "num py",
                            "numpy~=1", "numpy>=1,,<2", "numpy=1"}) {
        auto e = parse_requirement(bad, py);
        ASSERT_FALSE(e) << bad;
        EXPECT_EQ(e.error().code, Errc::invalid_argument);
        EXPECT_NE(e.error().message.find("name>=1.24"), std::string::npos) << e.error().message;
    }
    EXPECT_FALSE(parse_requirement(std::string(limits::kMaxRequirementBytes + 1, 'a'), py));
}

TEST(Requirements, NpmForms) {
    const auto js = Language::javascript;
    EXPECT_TRUE(satisfies("lodash", "4.17.21", js));
    EXPECT_TRUE(satisfies("lodash@^4.17", "4.17.21", js));
    EXPECT_FALSE(satisfies("lodash@^4.17", "5.0.0", js));
    EXPECT_TRUE(satisfies("x@^0.4.1", "0.4.9", js));
    EXPECT_FALSE(satisfies("x@^0.4.1", "0.5.0", js));
    EXPECT_FALSE(satisfies("x@^0.0.3", "0.0.4", js));
    EXPECT_TRUE(satisfies("x@~1.2.3", "1.2.9", js));
    EXPECT_FALSE(satisfies("x@~1.2.3", "1.3.0", js));
    EXPECT_TRUE(satisfies("x@~1", "1.9.0", js));
    EXPECT_TRUE(satisfies("x@>=4 <5", "4.9.1", js));
    EXPECT_FALSE(satisfies("x@>=4 <5", "5.0.0", js));
    EXPECT_TRUE(satisfies("x@4.x", "4.2.0", js));
    EXPECT_TRUE(satisfies("x@*", "0.0.1", js));
    EXPECT_TRUE(satisfies("x@1.2.3", "1.2.3", js));
    auto scoped = parse_requirement("@types/node@^20", js);
    ASSERT_TRUE(scoped) << scoped.error().message;
    EXPECT_EQ(scoped->name, "@types/node");
    for (const char* bad : {"", "Lodash", "lodash@", "lodash@latest", "@scope", "x@~=1.2"}) {
        auto e = parse_requirement(bad, js);
        ASSERT_FALSE(e) << bad;
        EXPECT_NE(e.error().message.find("name@^4.17"), std::string::npos) << e.error().message;
    }
}

TEST_F(PackageFolder, PythonResolvesByPublishedAndImportNameFromPipAndDebianLayouts) {
    // pip's layout: a dist-info with METADATA and top_level.txt.
    file("PyYAML-6.0.1.dist-info/METADATA",
         "Metadata-Version: 2.1\nName: PyYAML\nVersion: 6.0.1\n\nlong description: Version: 9\n");
    file("PyYAML-6.0.1.dist-info/top_level.txt", "_yaml\nyaml\n");
    file("yaml/__init__.py", "");
    // Debian's: an egg-info folder whose name holds no version.
    file("cryptography.egg-info/PKG-INFO",
         "Metadata-Version: 2.1\nName: cryptography\nVersion: 38.0.4\n");
    file("cryptography.egg-info/top_level.txt", "cryptography\n");
    // A single-file egg-info, and a module with no metadata at all.
    file("six-1.16.0.egg-info", "Metadata-Version: 1.2\nName: six\nVersion: 1.16.0\n");
    file("bare.py", "");
    auto idx = PackageIndex::build({"venv", dir_, Language::python});
    ASSERT_TRUE(idx) << idx.error().message;
    std::vector<Requirement> reqs;
    for (const char* r :
         {"yaml>=6", "PyYAML==6.0.1", "pyyaml", "cryptography~=38.0", "six", "bare"})
        reqs.push_back(*parse_requirement(r, Language::python));
    auto res = resolve_requirements(reqs, {&*idx}, Language::python);
    ASSERT_TRUE(res) << res.error().message;
    ASSERT_EQ(res->size(), 6u);
    EXPECT_EQ((*res)[0].package, "PyYAML");
    EXPECT_EQ((*res)[0].version, "6.0.1");
    EXPECT_EQ((*res)[0].set, "venv");
    EXPECT_EQ((*res)[3].version, "38.0.4");
    EXPECT_EQ((*res)[4].version, "1.16.0");
    EXPECT_EQ((*res)[5].version, "");

    // A mismatch names what was found, where, the sets searched and the fix.
    auto old = resolve_requirements({*parse_requirement("yaml>=7", Language::python)}, {&*idx},
                                    Language::python);
    ASSERT_FALSE(old);
    EXPECT_EQ(old.error().code, Errc::requirement);
    const std::string& m = old.error().message;
    for (const char* part :
         {"yaml>=7", "version 6.0.1 of PyYAML", "'venv'", dir_.c_str(), "--packages NAME=PATH"})
        EXPECT_NE(m.find(part), std::string::npos) << part << " in: " << m;
    // A version range on a package with no version metadata cannot be checked.
    auto bare = resolve_requirements({*parse_requirement("bare>=1", Language::python)}, {&*idx},
                                     Language::python);
    ASSERT_FALSE(bare);
    EXPECT_NE(bare.error().message.find("a version without metadata"), std::string::npos);
    // Missing everywhere, and no set at all.
    auto none = resolve_requirements({*parse_requirement("numpy", Language::python)}, {&*idx},
                                     Language::python);
    ASSERT_FALSE(none);
    EXPECT_NE(none.error().message.find("not installed"), std::string::npos);
    auto nosets =
        resolve_requirements({*parse_requirement("numpy", Language::python)}, {}, Language::python);
    ASSERT_FALSE(nosets);
    EXPECT_NE(nosets.error().message.find("no package set"), std::string::npos);
}

TEST_F(PackageFolder, JavaScriptResolvesPackageJsonAndScopedPackages) {
    file("lodash/package.json", R"({"name": "lodash", "version": "4.17.21", "main": "lodash.js"})");
    file("@types/node/package.json", R"({"name":"@types/node","version":"20.1.0"})");
    file(".bin/x", "");
    auto idx = PackageIndex::build({"app", dir_, Language::javascript});
    ASSERT_TRUE(idx) << idx.error().message;
    EXPECT_EQ(idx->size(), 2u);
    auto res = resolve_requirements({*parse_requirement("lodash@^4", Language::javascript),
                                     *parse_requirement("@types/node@>=20", Language::javascript)},
                                    {&*idx}, Language::javascript);
    ASSERT_TRUE(res) << res.error().message;
    EXPECT_EQ((*res)[0].version, "4.17.21");
    EXPECT_EQ((*res)[1].package, "@types/node");
    auto old = resolve_requirements({*parse_requirement("lodash@^5", Language::javascript)},
                                    {&*idx}, Language::javascript);
    ASSERT_FALSE(old);
    EXPECT_NE(old.error().message.find("npm install"), std::string::npos);
}

TEST_F(PackageFolder, TheFirstSetWithAMatchingVersionWinsAndOtherLanguagesAreSkipped) {
    file("a/x-1.0.dist-info/METADATA", "Name: x\nVersion: 1.0\n");
    file("b/x-2.0.dist-info/METADATA", "Name: x\nVersion: 2.0\n");
    file("c/x/package.json", R"({"name":"x","version":"3.0.0"})");
    auto a = PackageIndex::build({"a", dir_ / "a", Language::python});
    auto b = PackageIndex::build({"b", dir_ / "b", Language::python});
    auto c = PackageIndex::build({"c", dir_ / "c", Language::javascript});
    ASSERT_TRUE(a && b && c);
    auto any = resolve_requirements({*parse_requirement("x", Language::python)}, {&*c, &*a, &*b},
                                    Language::python);
    ASSERT_TRUE(any);
    EXPECT_EQ((*any)[0].set, "a");
    auto two = resolve_requirements({*parse_requirement("x>=2", Language::python)}, {&*c, &*a, &*b},
                                    Language::python);
    ASSERT_TRUE(two);
    EXPECT_EQ((*two)[0].set, "b");
}

TEST_F(PackageFolder, AnUnreadableOrOversizedSetIsAClearError) {
    auto missing = PackageIndex::build({"gone", dir_ / "nope", Language::python});
    ASSERT_FALSE(missing);
    EXPECT_NE(missing.error().message.find("package set 'gone'"), std::string::npos);
    EXPECT_NE(missing.error().message.find((dir_ / "nope").string()), std::string::npos);
}

TEST(Requirements, DebiansDistPackagesResolveWhereInstalled) {
    const fs::path dist = "/usr/lib/python3/dist-packages";
    if (!fs::exists(dist / "yaml")) GTEST_SKIP() << "python3-yaml is not installed here";
    auto idx = PackageIndex::build({"system", dist, Language::python});
    ASSERT_TRUE(idx) << idx.error().message;
    auto res = resolve_requirements({*parse_requirement("yaml>=5", Language::python)}, {&*idx},
                                    Language::python);
    ASSERT_TRUE(res) << res.error().message;
    EXPECT_EQ((*res)[0].package, "PyYAML");
}
