// libFuzzer target for the JSON-RPC decoder (both directions): any bytes must give either
// requests or error responses, never a crash, a hang or unbounded memory.
//
//   cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DSANDFLOW_FUZZ=ON
//   cmake --build build-fuzz --target jsonrpc_fuzz
//   build-fuzz/tests/jsonrpc_fuzz tests/fuzz/corpus -max_total_time=60
//
// With g++ (the default) the same function runs over the corpus in fuzz_replay_test.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "rpc/jsonrpc.hpp"
#include "rpc/rpc_limits.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const auto d = sandflow::rpc::decode(text, 1u << 20);
    for (const auto& e : d.entries) {
        if (const auto* r = std::get_if<sandflow::rpc::Request>(&e)) {
            // A valid request has a bounded method and an id of an allowed kind.
            if (r->method.size() > sandflow::limits::kMaxRpcMethodBytes) __builtin_trap();
            if (!(r->id.is_null() || r->id.is_string() || r->id.is_int64() || r->id.is_uint64()))
                __builtin_trap();
        } else {
            // An error response always encodes.
            (void)sandflow::rpc::encode(std::get<sandflow::json::object>(e));
        }
    }
    (void)sandflow::rpc::decode_incoming(text, 1u << 20);
    return 0;
}
