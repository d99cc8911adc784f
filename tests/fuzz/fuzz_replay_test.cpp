// Runs the fuzz target over its seed corpus and over simple mutations of it, so that the
// target builds and runs in every build (libFuzzer itself needs clang: SANDFLOW_FUZZ).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace fs = std::filesystem;

TEST(FuzzReplay, CorpusAndMutations) {
    const fs::path corpus = fs::path(SANDFLOW_SOURCE_DIR) / "tests/fuzz/corpus";
    std::vector<std::string> seeds;
    for (const auto& e : fs::directory_iterator(corpus)) {
        std::stringstream s;
        s << std::ifstream(e.path(), std::ios::binary).rdbuf();
        seeds.push_back(s.str());
    }
    ASSERT_FALSE(seeds.empty());
    std::mt19937 rng(12345);
    for (const auto& seed : seeds) {
        auto run = [](const std::string& s) {
            LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
        };
        run(seed);
        for (int i = 0; i < 2000; ++i) {
            std::string m = seed;
            const int edits = 1 + static_cast<int>(rng() % 4);
            for (int k = 0; k < edits && !m.empty(); ++k) {
                const std::size_t at = rng() % m.size();
                switch (rng() % 4) {
                    case 0:
                        m[at] = static_cast<char>(rng());
                        break;
                    case 1:
                        m.erase(at, 1 + rng() % 8);
                        break;
                    case 2:
                        m.insert(at, 1, "{}[]\",:0\\"[rng() % 9]);
                        break;
                    default:
                        m.insert(at, m.substr(at, rng() % 16));
                        break;
                }
            }
            run(m);
        }
    }
}
