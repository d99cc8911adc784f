// Shared assertion of the metadata extractor tests.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "actor/metadata.hpp"

namespace sandflow::testing {

// The result is a metadata error in `file` at line:column whose message contains `needle`.
inline ::testing::AssertionResult metadata_fails_at(std::string_view file,
                                                    const Result<actor::ActorMetadata>& r, int line,
                                                    int column, std::string_view needle) {
    if (r) return ::testing::AssertionFailure() << "no error; component " << r->component;
    const Error& e = r.error();
    const std::string prefix =
        std::string(file) + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
    if (e.code != Errc::metadata || e.message.rfind(prefix, 0) != 0 ||
        e.message.find(needle) == std::string::npos || e.data.at("line") != line ||
        e.data.at("column") != column ||
        e.data.at("file") != boost::json::value(boost::json::string(file))) {
        return ::testing::AssertionFailure() << "got " << boost::json::serialize(e.to_json())
                                             << "; wanted " << prefix << "..." << needle;
    }
    return ::testing::AssertionSuccess();
}

}  // namespace sandflow::testing
