// Limit layering without a sandbox (runtime/actor_limits.hpp): a runtime's defaults and
// maxima from its command line, an actor's declared limits, a request's, each within the
// maxima; then what a sandbox makes of them (the rlimit plan, the checks every backend
// makes). Enforcement, in real workers, is in worker_test and namespace_worker_test.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <map>

#include "runtime/actor_limits.hpp"
#include "sandbox/mechanisms/rlimits.hpp"

using namespace sandflow;

TEST(ActorLimits, RequestsAreCheckedAgainstTheMaximaAndMinima) {
    auto parsed = runtime::parse_limits(
        json::object{{"memory_bytes", 128 << 20}, {"timeout_ms", 5000}}, "params.limits");
    ASSERT_TRUE(parsed) << parsed.error().message;
    auto l = runtime::apply_limits({}, *parsed, runtime::default_maxima(), "params.limits");
    ASSERT_TRUE(l) << l.error().message;
    EXPECT_EQ(l->sandbox.memory_bytes, 128u << 20);
    EXPECT_EQ(l->timeout, std::chrono::milliseconds(5000));
    EXPECT_EQ(l->sandbox.pids, sandbox::SandboxLimits{}.pids);  // inherited

    auto unknown = runtime::parse_limits(json::object{{"memroy_bytes", 1}}, "params.limits");
    ASSERT_FALSE(unknown);
    EXPECT_NE(unknown.error().message.find("unknown limit 'memroy_bytes'"), std::string::npos);
    EXPECT_NE(unknown.error().message.find("memory_bytes"), std::string::npos);
    for (const json::value& bad : {json::value(0), json::value(-5), json::value("1G"),
                                   json::value(1.5), json::value(nullptr)}) {
        auto r = runtime::parse_limits(json::object{{"pids", bad}}, "params.limits");
        ASSERT_FALSE(r) << to_json_string(bad);
        EXPECT_NE(r.error().message.find("params.limits.pids must be a positive integer"),
                  std::string::npos)
            << r.error().message;
    }
    EXPECT_FALSE(runtime::parse_limits(json::value("x"), "params.limits"));

    runtime::ActorLimits maxima = runtime::default_maxima();
    maxima.sandbox.memory_bytes = 512u << 20;
    runtime::LimitOverrides big;
    big.memory_bytes = 1u << 30;
    auto over = runtime::apply_limits({}, big, maxima, "params.limits");
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error().code, Errc::invalid_argument);
    EXPECT_EQ(over.error().data.at("max"), json::value(512u << 20));
    EXPECT_NE(over.error().message.find("--max-limit memory_bytes="), std::string::npos);
    runtime::LimitOverrides tiny;
    tiny.memory_bytes = 1 << 20;
    auto under = runtime::apply_limits({}, tiny, maxima, "params.limits");
    ASSERT_FALSE(under);
    EXPECT_NE(under.error().message.find("below the minimum"), std::string::npos);
}

TEST(ActorLimits, CommandLineAssignmentsTakeSizeSuffixes) {
    runtime::LimitOverrides o;
    ASSERT_TRUE(runtime::parse_limit_assignment("memory_bytes=256M", o));
    ASSERT_TRUE(runtime::parse_limit_assignment("tmpfs_bytes=1G", o));
    ASSERT_TRUE(runtime::parse_limit_assignment("pids=32", o));
    EXPECT_EQ(*o.memory_bytes, 256u << 20);
    EXPECT_EQ(*o.tmpfs_bytes, 1u << 30);
    EXPECT_EQ(*o.pids, 32u);
    for (const char* bad : {"memory_bytes", "memory_bytes=", "memory_bytes=0", "pids=x", "pids=-1",
                            "nope=1", "pids=99999999999999999999G"}) {
        auto r = runtime::parse_limit_assignment(bad, o);
        EXPECT_FALSE(r) << bad;
        if (!r) {
            EXPECT_EQ(r.error().code, Errc::invalid_argument);
        }
    }
}

// Each layer starts from the one below and may only stay within the maxima: the runtime's
// defaults, then the actor's metadata, then the request; unnamed limits are inherited.
TEST(ActorLimits, EachLayerInheritsWhatItDoesNotName) {
    auto policy = runtime::limit_policy({"memory_bytes=300M", "timeout_ms=2000"},
                                        {"memory_bytes=1G", "pids=200"});
    ASSERT_TRUE(policy) << policy.error().message;
    EXPECT_EQ(policy->maxima.sandbox.memory_bytes, 1u << 30);
    EXPECT_EQ(policy->maxima.sandbox.pids, 200u);
    EXPECT_EQ(policy->maxima.timeout, runtime::default_maxima().timeout);
    EXPECT_EQ(policy->defaults.sandbox.memory_bytes, 300u << 20);
    EXPECT_EQ(policy->defaults.timeout, std::chrono::milliseconds(2000));
    EXPECT_EQ(policy->defaults.sandbox.pids, sandbox::SandboxLimits{}.pids);

    actor::ActorMetadata meta;
    meta.component = "greedy";
    meta.raw["limits"] = json::object{{"pids", 100}, {"timeout_ms", 9000}};
    auto declared = runtime::limits_for(meta, policy->defaults, policy->maxima);
    ASSERT_TRUE(declared) << declared.error().message;
    EXPECT_EQ(declared->sandbox.pids, 100u);
    EXPECT_EQ(declared->timeout, std::chrono::milliseconds(9000));
    EXPECT_EQ(declared->sandbox.memory_bytes, 300u << 20);  // the runtime's default

    runtime::LimitOverrides call;
    call.memory_bytes = 512u << 20;
    auto per_call = runtime::apply_limits(*declared, call, policy->maxima, "params.limits");
    ASSERT_TRUE(per_call) << per_call.error().message;
    EXPECT_EQ(per_call->sandbox.memory_bytes, 512u << 20);
    EXPECT_EQ(per_call->sandbox.pids, 100u);  // the actor's
    EXPECT_EQ(per_call->timeout, std::chrono::milliseconds(9000));

    // An actor may not declare more than the runtime allows: its error names where.
    meta.raw["limits"] = json::object{{"pids", 500}};
    auto greedy = runtime::limits_for(meta, policy->defaults, policy->maxima);
    ASSERT_FALSE(greedy);
    EXPECT_EQ(greedy.error().code, Errc::invalid_argument);
    EXPECT_NE(greedy.error().message.find("actor 'greedy'"), std::string::npos)
        << greedy.error().message;
    // A maximum below a built-in default lowers that default with it.
    auto low = runtime::limit_policy({}, {"pids=16"});
    ASSERT_TRUE(low) << low.error().message;
    EXPECT_EQ(low->defaults.sandbox.pids, 16u);
    EXPECT_FALSE(runtime::limit_policy({"pids=300"}, {"pids=200"}));
}

// The sandbox's own layer: the pids limit and RLIMIT_NPROC, so that the counted cgroup,
// where there is one, refuses a fork first; zeros are refused, never read as "unlimited".
TEST(SandboxLimits, TheRlimitPlanFollowsThePidsLimitAndZerosAreRefused) {
    sandbox::SandboxLimits l;
    l.pids = 20;
    l.nproc = 50;
    EXPECT_EQ(sandbox::mech::effective_nproc(l, false), 20u);
    EXPECT_EQ(sandbox::mech::effective_nproc(l, true), 50u);
    l.nproc = 10;
    EXPECT_EQ(sandbox::mech::effective_nproc(l, true), 21u);
    l.pids = UINT32_MAX;
    EXPECT_EQ(sandbox::mech::effective_nproc(l, true), UINT32_MAX);

    sandbox::SandboxLimits d;
    d.open_files = 99;
    d.cpu_seconds = 7;
    const auto plan = sandbox::mech::make_rlimit_plan(d, 33, 1u << 30);
    std::map<int, rlimit> set;
    for (const auto& e : plan.entries)
        if (e.resource >= 0) set[e.resource] = e.value;
    rlimit own{};
    auto capped = [&](int resource, rlim_t v) {
        ::getrlimit(resource, &own);
        return std::min(v, own.rlim_max);
    };
    EXPECT_EQ(plan.nproc(), capped(RLIMIT_NPROC, 33));
    EXPECT_EQ(set.at(RLIMIT_NOFILE).rlim_cur, capped(RLIMIT_NOFILE, 99));
    EXPECT_EQ(set.at(RLIMIT_CORE).rlim_max, 0u);
    EXPECT_EQ(set.at(RLIMIT_FSIZE).rlim_cur, capped(RLIMIT_FSIZE, d.tmpfs_bytes));
    EXPECT_EQ(set.at(RLIMIT_DATA).rlim_cur, capped(RLIMIT_DATA, 1u << 30));
    for (const auto& e : sandbox::mech::make_rlimit_plan(d, 33).entries)
        EXPECT_NE(e.resource, RLIMIT_DATA);  // only where no memory cgroup can be made

    EXPECT_TRUE(sandbox::check_positive(d));
    d.tmpfs_inodes = 0;
    auto zero = sandbox::check_positive(d);
    ASSERT_FALSE(zero);
    EXPECT_EQ(zero.error().code, Errc::invalid_argument);
    EXPECT_NE(zero.error().message.find("tmpfs_inodes"), std::string::npos) << zero.error().message;
}
