// What an actor needs from its package sets, and where each need resolves, read from package
// metadata on disk without running anything (docs/actors.md#packages).
//
// A requirement is a package name, as imported or as published, with an optional version
// range: Python's `name`, `name>=1.24`, `name>=1,<2`, `name==1.2.*`, `name~=1.4`,
// `name!=1.3`; JavaScript's `name`, `@scope/name`, `name@^4.17`, `name@~1.2`,
// `name@>=4 <5`, `name@4.x`. A package set is a folder the operator names: a Python
// site-packages folder (a virtualenv's, or Debian's /usr/lib/python3/dist-packages) or a
// node_modules tree. Python packages are found by their `*.dist-info` and `*.egg-info`
// metadata (Name, Version, and the import names in top_level.txt); JavaScript ones by
// `<set>/<name>/package.json`.
//
// Versions compare by their numeric release segments (1.24.2 > 1.9); a pre-release tag
// (1.0rc1, 1.0.0-beta.2) sorts before its release. Local tags and epochs are not read.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actor/language.hpp"
#include "core/error.hpp"
#include "core/json.hpp"

namespace sandflow::limits {
inline constexpr std::size_t kMaxRequirements = 64;       // "requires" entries per actor
inline constexpr std::size_t kMaxRequirementBytes = 256;  // one entry's text
inline constexpr std::size_t kMaxPackageSetEntries =
    100'000;  // folder entries one set's index reads
// Bytes of a metadata file read for its headers (Name and Version come first).
inline constexpr std::size_t kMaxPackageMetadataBytes = 64u << 10;
inline constexpr std::size_t kMaxVersionSegments = 16;
}  // namespace sandflow::limits

namespace sandflow::actor {

struct Version {
    std::vector<std::uint64_t> release;  // 1.24.2 -> {1, 24, 2}
    std::string pre;                     // pre-release tag ("rc1", "beta.2"); "" for a release
    std::string text;                    // as written
    // nullopt when `s` does not start with a number.
    static std::optional<Version> parse(std::string_view s);
    // <0, 0, >0; missing trailing segments count as 0 (1.2 == 1.2.0).
    int compare(const Version& o) const;
};

// compatible: PEP 440's ~=; tilde and caret: npm's ~ and ^; prefix: ==1.2.* and 1.2.x.
enum class VersionOp { eq, ne, ge, le, gt, lt, compatible, tilde, caret, prefix };

struct VersionClause {
    VersionOp op = VersionOp::eq;
    Version version;
    bool matches(const Version& v) const;
};

struct Requirement {
    std::string text;                    // as declared
    std::string name;                    // the package's name as written
    std::vector<VersionClause> clauses;  // all must hold; none: any version
    bool matches(const Version& v) const;
};

// Parses one "requires" entry; errors (Errc::invalid_argument) say what is wrong and show
// the accepted forms of `lang`.
Result<Requirement> parse_requirement(std::string_view text, Language lang);

// PEP 503's comparison form: lowercase, runs of '-', '_' and '.' as one '-'.
std::string normalize_python_name(std::string_view name);

// A folder of packages the operator named.
struct PackageSet {
    std::string name;
    std::filesystem::path path;
    Language language = Language::python;
};

// One installed package, as its metadata says.
struct InstalledPackage {
    std::string name;     // as published ("PyYAML", "lodash")
    std::string version;  // "" when the package has no version metadata
    std::filesystem::path where;
};

// The packages of one set, read once. Python: keyed by the normalised published name and by
// each import name in top_level.txt; a top-level module or package folder without metadata
// is indexed by its import name with no version. JavaScript: keyed by package name.
class PackageIndex {
  public:
    // Errc::invalid_argument when the folder cannot be read or holds more than
    // limits::kMaxPackageSetEntries entries.
    static Result<PackageIndex> build(const PackageSet& set);
    const PackageSet& set() const { return set_; }
    const InstalledPackage* find(std::string_view name) const;
    std::size_t size() const { return by_name_.size(); }

  private:
    PackageSet set_;
    std::map<std::string, InstalledPackage, std::less<>> by_name_;
};

// Where a requirement resolved.
struct Resolution {
    std::string requirement;  // as declared
    std::string package;      // the installed package's name
    std::string version;
    std::string set;  // the set's name
    std::string path;
    json::object to_json() const;
};

// Resolves each requirement in the sets of its language, in order; the first set holding a
// matching version wins. A missing or mismatched requirement is Errc::load naming the
// package, the version found (and where), the sets searched, and how to add it.
Result<std::vector<Resolution>> resolve_requirements(const std::vector<Requirement>& reqs,
                                                     const std::vector<const PackageIndex*>& sets,
                                                     Language lang);

}  // namespace sandflow::actor
