// Durable functions on the memory adapters: execute until blocked, skip-when-done, crashes at
// every commit, timers across restarts, calls, recursion, fan-out, nondeterminism.
#include <gtest/gtest.h>

#include <map>

#include <atomic>
#include <thread>

#include "choreo/client.h"
#include "choreo/durability/memory_store.h"
#include "choreo/service.h"
#include "choreo/transport/memory_transport.h"

namespace choreo {
namespace {

constexpr TimeMs start_ms = 1'700'000'000'000;

// One service instance whose process can crash and restart on the same store.
struct Node {
    Node(MemoryNetwork& network, std::string name, const Clock& clock, Random& random,
         std::function<void(Service&)> setup)
        : network_(network), name_(std::move(name)), clock_(clock), random_(random), setup_(std::move(setup)) {
        restart();
    }
    void restart() {
        service.reset();
        transport.reset();
        store.recover();
        transport = std::make_unique<MemoryTransport>(network_, Address::unicast(name_, "1"));
        ServiceOptions options{.name = name_, .instance = "1", .batch_delay_us_max = 0, .step_workers_max = 0};
        if (tune) tune(options);
        service = std::make_unique<Service>(options, *transport, store, clock_, random_);
        setup_(*service);
        crashed = false;
    }
    // One batch; a store crash ends this process (the test restarts it).
    bool run_once() {
        if (crashed) return false;
        Result<bool> worked = service->run_once(0);
        if (!worked.ok()) {
            EXPECT_EQ(worked.status().reason(), "crashed") << worked.status().to_string();
            crashed = true;
            return false;
        }
        return *worked;
    }
    MemoryNetwork& network_;
    std::string name_;
    const Clock& clock_;
    Random& random_;
    std::function<void(Service&)> setup_;
    std::function<void(ServiceOptions&)> tune;  // set, then restart(), to change options
    MemoryStore store;
    std::unique_ptr<MemoryTransport> transport;
    std::unique_ptr<Service> service;
    bool crashed = false;
};

class FunctionsTest : public ::testing::Test {
protected:
    Node& node(const std::string& name, std::function<void(Service&)> setup = [](Service&) {}) {
        auto [slot, inserted] = nodes_.try_emplace(name, nullptr);
        if (inserted) slot->second = std::make_unique<Node>(network_, name, clock_, random_, std::move(setup));
        return *slot->second;
    }
    // Runs every node until no node does anything (bounded).
    void settle() {
        for (int round = 0; round < 10'000; round++) {
            bool worked = false;
            for (auto& [name, each] : nodes_) worked = each->run_once() || worked;
            if (!worked) return;
        }
        FAIL() << "the world did not settle";
    }
    std::optional<PromiseRow> result(Node& at, const std::string& id) {
        Result<std::optional<PromiseRow>> row = at.service->result(id);
        EXPECT_TRUE(row.ok());
        return row.ok() ? *row : std::nullopt;
    }
    template <typename T>
    T resolved_value(Node& at, const std::string& id) {
        std::optional<PromiseRow> row = result(at, id);
        EXPECT_TRUE(row.has_value());
        if (!row) return T{};
        EXPECT_EQ(row->state, PromiseState::resolved) << text_of(row->value);
        if (row->state != PromiseState::resolved) return T{};
        Result<T> value = unpack<T>(row->value);
        EXPECT_TRUE(value.ok());
        return value.ok() ? std::move(value).value() : T{};
    }

    ManualClock clock_{start_ms};
    SeededRandom random_{11};
    MemoryNetwork network_;
    std::map<std::string, std::unique_ptr<Node>> nodes_;
};

TEST_F(FunctionsTest, AFunctionRunsToItsResultAcrossServices) {
    node("calc", [](Service& svc) {
        svc.function("add", [](DurableContext&, std::pair<int, int> operands) -> Task<int> {
            co_return operands.first + operands.second;
        });
    });
    Node& app = node("app");
    ASSERT_TRUE(app.service->start("calc", "add", "job-1", std::make_pair(2, 3)).ok());
    settle();
    EXPECT_EQ(resolved_value<int>(app, "job-1"), 5);
    EXPECT_EQ(node("calc").service->stats().executions_completed, 1u);
}

// Three steps, each callable counted; every call returns a fresh number, so a recorded result
// that was reused is told apart from a re-run.
struct StepLedger {
    std::map<std::string, std::vector<int>> runs;  // step -> the values each run returned
    int next = 100;
};

void three_steps(Service& svc, StepLedger& ledger, bool at_most_once_middle) {
    svc.function("three", [&ledger, at_most_once_middle](DurableContext& ctx, int seed) -> Task<std::string> {
        auto counted = [&ledger](std::string name) {
            return [&ledger, name] {
                ledger.runs[name].push_back(ledger.next++);
                return ledger.runs[name].back();
            };
        };
        // Named first: GCC 12 destroys a capturing lambda made inside a co_await expression twice.
        auto step_a = counted("a");
        auto step_b = counted("b");
        auto step_c = counted("c");
        const int a = co_await ctx.step<int>("a", step_a);
        int b = -1;
        try {
            b = co_await ctx.step<int>("b", step_b, StepOptions{.at_most_once = at_most_once_middle});
        } catch (const DurableError& error) {
            if (error.reason() != durable_error::step_outcome_unknown) throw;
        }
        const int c = co_await ctx.step<int>("c", step_c);
        co_return std::to_string(seed) + ":" + std::to_string(a) + "," + std::to_string(b) + "," + std::to_string(c);
    });
}

TEST_F(FunctionsTest, ThreeStepsSurviveACrashAtEveryCommit) {
    int crashes = 0;
    for (int crash_at = 0; crash_at < 6; crash_at++) {
        for (MemoryStore::CrashPoint point : {MemoryStore::CrashPoint::before_commit, MemoryStore::CrashPoint::after_commit}) {
            SCOPED_TRACE("crash at commit " + std::to_string(crash_at) + (point == MemoryStore::CrashPoint::before_commit ? " before" : " after"));
            nodes_.clear();
            StepLedger ledger;
            Node& worker = node("worker", [&ledger](Service& svc) { three_steps(svc, ledger, false); });
            Node& app = node("app");
            ASSERT_TRUE(app.service->start("worker", "three", "run-1", 7).ok());
            for (int round = 0; round < 100 && static_cast<int>(worker.service->stats().commits) < crash_at; round++) {
                const bool worked = worker.run_once();
                if (!app.run_once() && !worked) break;
            }
            worker.store.inject_crash(point);
            settle();
            crashes += worker.crashed ? 1 : 0;
            if (worker.crashed) worker.restart();  // a new process on the same store
            worker.store.inject_crash(MemoryStore::CrashPoint::none);
            settle();
            const std::string result = resolved_value<std::string>(app, "run-1");
            // Every recorded result was the last run of its step: a step ran again only when its
            // earlier run recorded nothing.
            ASSERT_EQ(ledger.runs["a"].size() + ledger.runs["b"].size() + ledger.runs["c"].size() >= 3, true);
            EXPECT_EQ(result, "7:" + std::to_string(ledger.runs["a"].back()) + "," +
                                  std::to_string(ledger.runs["b"].back()) + "," + std::to_string(ledger.runs["c"].back()));
            EXPECT_LE(ledger.runs["a"].size() + ledger.runs["b"].size() + ledger.runs["c"].size(), 4u);
        }
    }
    // Before and after each of the worker's commits: the invoke with step a's start, each step's
    // result with the next start, and the last result with the settlement.
    EXPECT_GE(crashes, 8);
}

TEST_F(FunctionsTest, AnAtMostOnceStepInterruptedAfterItsStartIsNotRunAgain) {
    StepLedger ledger;
    Node& worker = node("worker", [&ledger](Service& svc) { three_steps(svc, ledger, true); });
    Node& app = node("app");
    ASSERT_TRUE(app.service->start("worker", "three", "run-2", 1).ok());
    // Run until step b has run (its start committed, its result not yet).
    for (int round = 0; round < 100 && ledger.runs["b"].empty(); round++) {
        worker.run_once();
        app.run_once();
    }
    ASSERT_EQ(ledger.runs["b"].size(), 1u);
    worker.store.inject_crash(MemoryStore::CrashPoint::before_commit);  // b's result is lost
    settle();
    ASSERT_TRUE(worker.crashed);
    worker.restart();
    settle();
    EXPECT_EQ(ledger.runs["b"].size(), 1u);  // never run twice
    const std::string result = resolved_value<std::string>(app, "run-2");
    EXPECT_EQ(result, "1:" + std::to_string(ledger.runs["a"][0]) + ",-1," + std::to_string(ledger.runs["c"][0]));
}

TEST_F(FunctionsTest, ASleepSurvivesARestartAndFiresOnce) {
    int after_sleep_runs = 0;
    Node& worker = node("worker", [&after_sleep_runs](Service& svc) {
        svc.function("nap", [&after_sleep_runs](DurableContext& ctx, int minutes) -> Task<int> {
            co_await ctx.sleep_ms(minutes * 60'000);
            co_return co_await ctx.step<int>("after", [&after_sleep_runs] { return ++after_sleep_runs; });
        });
    });
    Node& app = node("app");
    ASSERT_TRUE(app.service->start("worker", "nap", "nap-1", 5).ok());
    settle();
    EXPECT_EQ(result(app, "nap-1")->state, PromiseState::pending);
    worker.restart();  // the process goes away mid-sleep
    clock_.advance_ms(4 * 60'000);
    settle();
    EXPECT_EQ(result(app, "nap-1")->state, PromiseState::pending);  // not yet due
    clock_.advance_ms(60'000);
    settle();
    EXPECT_EQ(resolved_value<int>(app, "nap-1"), 1);
    EXPECT_EQ(worker.service->stats().timers_fired, 1u);
    clock_.advance_ms(60 * 60'000);
    settle();
    EXPECT_EQ(after_sleep_runs, 1);
    EXPECT_EQ(worker.service->stats().timers_fired, 1u);  // fired once
}

TEST_F(FunctionsTest, ALongRunningExecutionOutlivesPromiseRetention) {
    constexpr TimeMs day_ms = 24LL * 3600 * 1000;
    Node& worker = node("worker", [](Service& svc) {
        svc.function("slowpoke", [](DurableContext& ctx, int) -> Task<int> {
            co_await ctx.sleep_ms(8 * day_ms);
            co_await ctx.sleep_ms(9 * day_ms);  // by now the first timer's promise is 9 days settled
            co_return 3;
        });
    });
    Node& app = node("app");
    ASSERT_TRUE(app.service->start("worker", "slowpoke", "slow-1", 0).ok());
    settle();
    for (int day = 0; day < 18; day++) {
        clock_.advance_ms(day_ms);
        settle();  // retention purges run between batches
    }
    EXPECT_EQ(resolved_value<int>(app, "slow-1"), 3);
    EXPECT_EQ(worker.service->stats().timers_fired, 2u);
}

TEST_F(FunctionsTest, DuplicatedCallRequestsStartOneExecution) {
    int runs = 0;
    Node& worker = node("worker", [&runs](Service& svc) {
        svc.function("once", [&runs](DurableContext& ctx, int) -> Task<int> {
            co_return co_await ctx.step<int>("count", [&runs] { return ++runs; });
        });
    });
    Node& app = node("app");
    ASSERT_TRUE(app.service->start("worker", "once", "dup-1", 0).ok());
    ASSERT_TRUE(app.service->start("worker", "once", "dup-1", 0).ok());  // a second request, new message id
    settle();
    ASSERT_TRUE(app.service->start("worker", "once", "dup-1", 0).ok());  // and one after it finished
    settle();
    EXPECT_EQ(runs, 1);
    EXPECT_EQ(worker.service->stats().executions_started, 1u);
    EXPECT_EQ(resolved_value<int>(app, "dup-1"), 1);
}

TEST_F(FunctionsTest, NondeterminismFailsTheExecutionAndTheServiceGoesOn) {
    bool flipped = false;
    Node& worker = node("worker", [&flipped](Service& svc) {
        svc.function("fickle", [&flipped](DurableContext& ctx, int) -> Task<int> {
            co_await ctx.sleep_ms(1000);
            flipped = true;  // a function reading outside state between awaits: a bug
            co_return 1;
        });
        svc.function("wobbly", [&flipped](DurableContext& ctx, int) -> Task<int> {
            co_await ctx.step<int>(flipped ? "renamed" : "original", [] { return 1; });
            co_await ctx.sleep_ms(1000);
            co_return 2;
        });
    });
    Node& app = node("app");
    ASSERT_TRUE(app.service->start("worker", "wobbly", "w-1", 0).ok());
    ASSERT_TRUE(app.service->start("worker", "fickle", "f-1", 0).ok());
    settle();  // both asleep; both wake in one step, "f-1" replayed before "w-1"
    worker.restart();  // nondeterminism shows in replays: after a restart (or a frame cache miss)
    clock_.advance_ms(2000);
    settle();
    std::optional<PromiseRow> wobbly = result(app, "w-1");
    ASSERT_TRUE(wobbly.has_value());
    EXPECT_EQ(wobbly->state, PromiseState::rejected);
    EXPECT_NE(std::string(text_of(wobbly->value)).find("nondeterminism"), std::string::npos) << text_of(wobbly->value);
    EXPECT_EQ(resolved_value<int>(app, "f-1"), 1);  // the service kept running
    EXPECT_EQ(worker.service->stats().executions_failed, 1u);
}

TEST_F(FunctionsTest, RecursionToDepth64) {
    node("math", [](Service& svc) {
        svc.function("depth", [](DurableContext& ctx, int n) -> Task<int> {
            if (n == 0) co_return 0;
            const int below = co_await ctx.call<int>("math", "depth", n - 1);
            co_return below + 1;
        });
    });
    Node& app = node("app");
    ASSERT_TRUE(app.service->start("math", "depth", "deep", 64).ok());
    settle();
    EXPECT_EQ(resolved_value<int>(app, "deep"), 64);
    EXPECT_EQ(node("math").service->stats().executions_completed, 65u);
}

TEST_F(FunctionsTest, FanOutOf1000ChildrenAndFanIn) {
    node("squares", [](Service& svc) {
        svc.function("square", [](DurableContext&, int n) -> Task<long> { co_return static_cast<long>(n) * n; });
    });
    node("summer", [](Service& svc) {
        svc.function("sum", [](DurableContext& ctx, int count) -> Task<long> {
            std::vector<Future<long>> children;
            for (int n = 1; n <= count; n++) children.push_back(ctx.call_async<long>("squares", "square", n));
            std::vector<long> squares = co_await ctx.all(std::move(children));
            long total = 0;
            for (long square : squares) total += square;
            co_return total;
        });
    });
    Node& app = node("app");
    ASSERT_TRUE(app.service->start("summer", "sum", "fan", 1000).ok());
    settle();
    EXPECT_EQ(resolved_value<long>(app, "fan"), 1000L * 1001 * 2001 / 6);
    EXPECT_EQ(node("squares").service->stats().executions_completed, 1000u);
}

TEST_F(FunctionsTest, ATimedOutCallSettlesOnceAndALateReplyChangesNothing) {
    node("slow", [](Service& svc) {
        svc.function("work", [](DurableContext& ctx, int) -> Task<int> {
            co_await ctx.sleep_ms(10'000);
            co_return 42;
        });
    });
    node("caller", [](Service& svc) {
        svc.function("ask", [](DurableContext& ctx, int) -> Task<std::string> {
            try {
                const int answer = co_await ctx.call<int>("slow", "work", 0, CallOptions{.timeout_ms = 1000});
                co_return "answer " + std::to_string(answer);
            } catch (const DurableError& error) {
                co_return error.reason();
            }
        });
    });
    Node& app = node("app");
    ASSERT_TRUE(app.service->start("caller", "ask", "ask-1", 0).ok());
    settle();
    clock_.advance_ms(1000);
    settle();
    EXPECT_EQ(resolved_value<std::string>(app, "ask-1"), "timed_out");
    clock_.advance_ms(10'000);
    settle();  // the slow reply arrives now
    Node& caller = node("caller");
    std::optional<PromiseRow> child = result(caller, "ask-1.0");
    ASSERT_TRUE(child.has_value());
    EXPECT_EQ(child->state, PromiseState::timed_out);
    EXPECT_EQ(caller.service->stats().settle_conflicts, 1u);  // reported, not applied
    EXPECT_EQ(resolved_value<std::string>(app, "ask-1"), "timed_out");
}

TEST_F(FunctionsTest, AnyReturnsTheFirstToSettle) {
    node("timers", [](Service& svc) {
        svc.function("race", [](DurableContext& ctx, int) -> Task<std::size_t> {
            std::vector<Future<void>> naps;
            naps.push_back(ctx.sleep_ms(5000));
            naps.push_back(ctx.sleep_ms(1000));
            naps.push_back(ctx.sleep_ms(3000));
            auto [first, nothing] = co_await ctx.any(std::move(naps));
            (void)nothing;
            co_return first;
        });
    });
    Node& app = node("app");
    ASSERT_TRUE(app.service->start("timers", "race", "race-1", 0).ok());
    settle();
    clock_.advance_ms(1000);
    settle();
    EXPECT_EQ(resolved_value<std::size_t>(app, "race-1"), 1u);
}

TEST_F(FunctionsTest, MisuseFailsTheExecutionNotTheService) {
    node("worker", [](Service& svc) {
        svc.function("two-steps-at-once", [](DurableContext& ctx, int) -> Task<int> {
            auto first = ctx.step<int>("one", [] { return 1; });
            auto second = ctx.step<int>("two", [] { return 2; });  // before the first was awaited
            co_return co_await first + co_await second;
        });
        svc.function("nest", [](DurableContext& ctx, int n) -> Task<int> {
            co_return co_await ctx.call<int>("worker", "nest", n + 1);  // ids grow until too long
        });
    });
    Node& app = node("app");
    ASSERT_TRUE(app.service->start("worker", "two-steps-at-once", "m-1", 0).ok());
    ASSERT_TRUE(app.service->start("worker", "nest", "m-2", 0).ok());
    settle();
    for (const char* id : {"m-1", "m-2"}) {
        std::optional<PromiseRow> row = result(app, id);
        ASSERT_TRUE(row.has_value());
        EXPECT_EQ(row->state, PromiseState::rejected) << id;
    }
    EXPECT_NE(std::string(text_of(result(app, "m-1")->value)).find("steps_not_awaited"), std::string::npos);
    // Each level adds ".0" to the id: the id limit stops it first, inside the function that
    // would nest too deep, and every caller above is rejected in turn.
    EXPECT_NE(std::string(text_of(result(app, "m-2")->value)).find("promise_id_too_long"), std::string::npos);
}

TEST_F(FunctionsTest, ACallThatCannotBeDeliveredIsRejectedNotLeftWaiting) {
    Node& caller = node("caller", [](Service& svc) {
        svc.function("ask-nobody", [](DurableContext& ctx, int) -> Task<std::string> {
            try {
                co_return std::to_string(co_await ctx.call<int>("nobody", "anything", 0));
            } catch (const DurableError& error) {
                co_return error.detail();
            }
        });
    });
    caller.tune = [](ServiceOptions& options) { options.kernel.send_attempts_max = 3; };
    caller.restart();
    Node& app = node("app");
    ASSERT_TRUE(app.service->start("caller", "ask-nobody", "lonely", 0).ok());
    for (int round = 0; round < 10; round++) {
        settle();
        clock_.advance_ms(60'000);  // past every retransmission backoff
    }
    const std::string answer = resolved_value<std::string>(app, "lonely");
    EXPECT_NE(answer.find("send_attempts_exhausted"), std::string::npos) << answer;
}

// The frame cache: a blocked frame resumes where it waited, instead of running from the top; a
// restart (or a cache of size 0) replays from the history, with the same result.
TEST_F(FunctionsTest, TheFrameCacheResumesInsteadOfReplaying) {
    for (std::size_t cached_max : {std::size_t{1024}, std::size_t{0}}) {
        SCOPED_TRACE("executions_cached_max " + std::to_string(cached_max));
        nodes_.clear();
        int starts = 0;  // how often the function ran from its top
        Node& worker = node("worker", [&starts](Service& svc) {
            svc.function("naps", [&starts](DurableContext& ctx, int) -> Task<int> {
                starts++;
                for (int nap = 0; nap < 3; nap++) co_await ctx.sleep_ms(1000);
                co_return 7;
            });
        });
        worker.tune = [cached_max](ServiceOptions& options) { options.kernel.executions_cached_max = cached_max; };
        worker.restart();
        Node& app = node("app");
        ASSERT_TRUE(app.service->start("worker", "naps", "naps-1", 0).ok());
        settle();
        for (int nap = 0; nap < 2; nap++) {
            clock_.advance_ms(1000);
            settle();
        }
        EXPECT_EQ(starts, cached_max > 0 ? 1 : 3);
        worker.restart();  // the cache is memory only: a restart replays once
        clock_.advance_ms(1000);
        settle();
        EXPECT_EQ(starts, cached_max > 0 ? 2 : 4);  // the restart replay and the timer share a step
        EXPECT_EQ(resolved_value<int>(app, "naps-1"), 7);
    }
}

TEST_F(FunctionsTest, UnknownFunctionRejectsTheCall) {
    node("empty");
    Node& app = node("app");
    ASSERT_TRUE(app.service->start("empty", "nothing-here", "u-1", 0).ok());
    settle();
    std::optional<PromiseRow> row = result(app, "u-1");
    ASSERT_TRUE(row.has_value());
    EXPECT_EQ(row->state, PromiseState::rejected);
    EXPECT_NE(std::string(text_of(row->value)).find("unknown_function"), std::string::npos);
}

TEST_F(FunctionsTest, AStepThatRunsAgainGetsTheSameStepKey) {
    std::vector<std::string> keys;
    Node& worker = node("worker", [&keys](Service& svc) {
        svc.function("pay", [&keys](DurableContext& ctx, int) -> Task<int> {
            co_await ctx.sleep_ms(10);
            co_return co_await ctx.step<int>("charge", [&keys](const std::string& key) {
                keys.push_back(key);
                return 1;
            });
        });
    });
    Node& app = node("app");
    ASSERT_TRUE(app.service->start("worker", "pay", "pay-1", 0).ok());
    settle();
    clock_.advance_ms(10);
    // Lose the step's result once: it runs again, with the same key.
    for (int round = 0; round < 100 && keys.empty(); round++) worker.run_once();
    ASSERT_EQ(keys.size(), 1u);
    worker.store.inject_crash(MemoryStore::CrashPoint::before_commit);
    settle();
    worker.restart();
    settle();
    ASSERT_EQ(keys.size(), 2u);
    EXPECT_EQ(keys[0], "pay-1/1");
    EXPECT_EQ(keys[1], keys[0]);
    EXPECT_EQ(resolved_value<int>(app, "pay-1"), 1);
}

// Real threads: a step that blocks runs on a worker, and other executions go on meanwhile.
TEST(FunctionsThreadedTest, ASlowStepDoesNotStallOtherExecutions) {
    SystemClock clock;
    SeededRandom random{5};
    MemoryNetwork network;
    MemoryTransport transport{network, Address::unicast("worker", "1")};
    MemoryStore store;
    Service worker{{.name = "worker", .instance = "1", .step_workers_max = 2}, transport, store, clock, random};
    std::atomic<bool> release{false};
    worker.function("slow", [&release](DurableContext& ctx, int) -> Task<int> {
        co_return co_await ctx.step<int>("block", [&release] {
            while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            return 1;
        });
    });
    worker.function("quick", [](DurableContext& ctx, int n) -> Task<int> {
        co_return co_await ctx.step<int>("add", [n] { return n + 1; });
    });
    std::thread runner{[&] { EXPECT_TRUE(worker.run().ok()); }};
    Client client{worker};
    ASSERT_TRUE(client.start("worker", "slow", "slow-1", 0).ok());
    ASSERT_TRUE(client.start("worker", "quick", "quick-1", 41).ok());
    Result<int> quick = client.wait<int>("quick-1", 10'000);  // while slow-1's step still blocks
    ASSERT_TRUE(quick.ok()) << quick.status().to_string();
    EXPECT_EQ(*quick, 42);
    EXPECT_EQ(client.poll("slow-1").value()->state, PromiseState::pending);
    release = true;
    Result<int> slow = client.wait<int>("slow-1", 10'000);
    ASSERT_TRUE(slow.ok()) << slow.status().to_string();
    EXPECT_EQ(*slow, 1);
    EXPECT_EQ(client.wait<int>("never-started", 10).status().code(), StatusCode::not_found);
    worker.stop();
    runner.join();
}


// Regression (found in review): a transport whose acknowledge() can be made to fail once (a broker hiccup after the
// store commit succeeded).
class FlakyAckTransport final : public Transport {
public:
    explicit FlakyAckTransport(Transport& inner) : inner_(inner) {}
    Features features() const override { return inner_.features(); }
    Address local_address() const override { return inner_.local_address(); }
    std::string route(const Address& to) override { return inner_.route(to); }
    Result<std::size_t> send(std::span<const OutgoingMessage> batch) override { return inner_.send(batch); }
    Status receive(ReceiveBatch& out, std::size_t deliveries_max, std::int64_t timeout_us) override {
        return inner_.receive(out, deliveries_max, timeout_us);
    }
    Status acknowledge(std::span<const DeliveryTag> tags) override {
        if (fail_next_ack.exchange(false)) return transient_error("ack_failed", "injected");
        return inner_.acknowledge(tags);
    }
    void wake() override { inner_.wake(); }
    void close() override { inner_.close(); }
    std::atomic<bool> fail_next_ack{false};

private:
    Transport& inner_;
};

// Regression (found in review): Service::commit() returns the ack error after the store commit and kernel.committed()
// succeeded; run_once() then treats the batch as failed and keeps its inputs for a retry, so the
// posted message is originated again with a fresh id and applied twice downstream.
TEST(FunctionsReviewTest, AFailedAckAfterACommitDoesNotSendAPostTwice) {
    ManualClock clock{start_ms};
    SeededRandom random{3};
    MemoryNetwork network;
    MemoryTransport a_inner{network, Address::unicast("a", "1")};
    FlakyAckTransport a_transport{a_inner};
    MemoryTransport b_transport{network, Address::unicast("b", "1")};
    MemoryStore a_store;
    MemoryStore b_store;
    Service a{{.name = "a", .instance = "1", .batch_delay_us_max = 0, .step_workers_max = 0}, a_transport, a_store, clock, random};
    Service b{{.name = "b", .instance = "1", .batch_delay_us_max = 0, .step_workers_max = 0}, b_transport, b_store, clock, random};
    int hellos = 0;
    a.on_step("ping", [](StepContext&) {});
    b.on_step("hello", [&hellos](StepContext&) { hellos++; });
    ASSERT_TRUE(b.post(Address::unicast("a", "1"), "ping", Bytes{}).ok());
    ASSERT_TRUE(b.run_once(0).ok());  // ping is on its way to a
    ASSERT_TRUE(a.post(Address::unicast("b", "1"), "hello", Bytes{}).ok());
    a_transport.fail_next_ack = true;  // the batch with ping and hello commits, its ack fails
    for (int round = 0; round < 200; round++) {
        clock.advance_ms(100);
        (void)a.run_once(0);
        (void)b.run_once(0);
    }
    EXPECT_EQ(hellos, 1);
}

// Regression (found in review): the same failed ack re-feeds a step result that is already recorded. The kernel counts
// the stale result as "the execution's step returned", erases the frame parked for the NEXT
// step (still running on a worker) and lets the execution replay, which dispatches that running
// step a second time.
TEST(FunctionsReviewTest, AFailedAckAfterACommitDoesNotDispatchAStepTwice) {
    ManualClock clock{start_ms};
    SeededRandom random{4};
    MemoryNetwork network;
    MemoryTransport inner{network, Address::unicast("worker", "1")};
    FlakyAckTransport transport{inner};
    MemoryTransport app_transport{network, Address::unicast("app", "1")};
    MemoryStore store;
    MemoryStore app_store;
    Service worker{{.name = "worker", .instance = "1", .batch_delay_us_max = 0, .step_workers_max = 2}, transport, store, clock, random};
    Service app{{.name = "app", .instance = "1", .batch_delay_us_max = 0, .step_workers_max = 0}, app_transport, app_store, clock, random};
    std::atomic<int> a_runs{0};
    std::atomic<int> b_runs{0};
    std::atomic<bool> release_b{false};
    worker.function("two", [&](DurableContext& ctx, int) -> Task<int> {
        Future<void> nap = ctx.sleep_ms(1000);  // its timer asks for a replay later
        auto step_a = [&a_runs] { return ++a_runs; };
        auto step_b = [&b_runs, &release_b] {
            b_runs++;
            while (!release_b.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            return 2;
        };
        const int a = co_await ctx.step<int>("a", step_a);
        const int b = co_await ctx.step<int>("b", step_b);
        co_await nap;
        co_return a + b;
    });
    worker.function("noop", [](DurableContext&, int) -> Task<int> { co_return 0; });
    auto pump_until = [&](auto done) {
        for (int round = 0; round < 2000 && !done(); round++) {
            (void)app.run_once(0);
            (void)worker.run_once(0);
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    };
    ASSERT_TRUE(app.start("worker", "two", "e-1", 0).ok());
    pump_until([&] { return a_runs.load() == 1; });
    ASSERT_EQ(a_runs.load(), 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a's result waits in step_results_
    ASSERT_TRUE(app.start("worker", "noop", "e-2", 0).ok());     // a delivery in the same batch: an ack
    ASSERT_TRUE(app.run_once(0).ok());
    transport.fail_next_ack = true;
    ASSERT_TRUE(worker.run_once(0).ok());  // records a, dispatches b (blocks); the ack fails
    pump_until([&] { return b_runs.load() >= 1; });
    ASSERT_EQ(b_runs.load(), 1);
    clock.advance_ms(2000);                 // past the commit backoff and the nap
    for (int round = 0; round < 20; round++) {
        (void)worker.run_once(0);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    EXPECT_EQ(b_runs.load(), 1) << "step b was dispatched again while its first run was still going";
    release_b = true;
    pump_until([&] {
        Result<std::optional<PromiseRow>> row = app.result("e-1");
        return row.ok() && row->has_value() && (*row)->state != PromiseState::pending;
    });
    worker.stop();
}

// Regression (found in review): ~Service destroys mutex_ and step_results_ (declared after workers_) before workers_
// joins its threads; a step still running then reports into destroyed members. Run under
// -DCHOREO_SANITIZE=ON: ASan reports heap-use-after-free in Service's on_done lambda.
TEST(FunctionsReviewTest, DestroyingAServiceWhileAStepRunsIsSafe) {
    ManualClock clock{start_ms};
    SeededRandom random{6};
    MemoryNetwork network;
    MemoryTransport transport{network, Address::unicast("worker", "1")};
    MemoryStore store;
    std::atomic<int> started{0};
    {
        Service worker{{.name = "worker", .instance = "1", .batch_delay_us_max = 0, .step_workers_max = 2}, transport, store, clock, random};
        worker.function("fast", [](DurableContext& ctx, int) -> Task<int> {
            auto quick = [] { return 1; };
            co_return co_await ctx.step<int>("quick", quick);
        });
        worker.function("slow", [&started](DurableContext& ctx, int) -> Task<int> {
            auto slow = [&started] {
                started++;
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
                return 1;
            };
            co_return co_await ctx.step<int>("slow", slow);
        });
        ASSERT_TRUE(worker.start("worker", "fast", "fast-1", 0).ok());
        ASSERT_TRUE(worker.start("worker", "slow", "slow-1", 0).ok());
        for (int round = 0; round < 50 && started.load() == 0; round++) {
            (void)worker.run_once(0);
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        ASSERT_EQ(started.load(), 1);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // "quick" has reported
    }  // the slow step is still running here
}


// Regression (found in review): child promise ids grow by ".<n>" per call; ExecutionRun::call/sleep_until build
// "<execution>.<n>" and make_pending_promise asserts it is at most 256 bytes, so an execution
// with a long (valid) id -- or a recursion about 126 deep -- aborts the process at its first call,
// and again on every restart (it is replayed at start-up): a crash loop.
TEST_F(FunctionsTest, ACallFromAnExecutionWithALongIdFailsTheExecutionNotTheProcess) {
    EXPECT_EXIT(
        {
            node("calc", [](Service& svc) {
                svc.function("inner", [](DurableContext&, int) -> Task<int> { co_return 1; });
                svc.function("outer", [](DurableContext& ctx, int) -> Task<int> {
                    co_return co_await ctx.call<int>("calc", "inner", 0);
                });
            });
            Node& app = node("app");
            const std::string id(255, 'x');
            if (!app.service->start("calc", "outer", id, 0).ok()) std::exit(2);
            settle();
            std::optional<PromiseRow> row = result(app, id);
            std::exit(row && row->state != PromiseState::pending ? 0 : 1);
        },
        ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace choreo
