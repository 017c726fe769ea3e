// sqlite_kill_test.cpp — crash safety with real processes (issue 4, item 6).
//
// Runs sqlite_kill_child (two services on SQLite stores, a durable credit workload; see there)
// and kills it with SIGKILL at random moments: mostly 30–300 ms after it opened its stores, while
// it works; some while it starts (execs, opens and recovers the files, runs integrity_check); and
// some once it is done and idle. After kills it checks the invariants of the committed state (each effect at most once,
// each step's state and outbox rows together, integrity_check ok); finally it lets the workload
// run to completion and verifies the whole ledger: every credit produced, applied and confirmed
// exactly once, every outbox row settled, no dead letter.
//
// The workload is sized from a calibration run so that the kills land while it is still going;
// if it finishes before enough kills landed anyway, a fresh workload (an "epoch") starts.
//
// Reproduce: CHOREO_KILL_SEED=<seed> [CHOREO_KILL_CREDITS=<credits>] ./sqlite_kill_test
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.h"
#include "support/temp_dir.h"

namespace choreo {
namespace {

using testing_support::TempDir;
using Clock = std::chrono::steady_clock;

constexpr int load_kills_required = 20;
constexpr int early_kills_wanted = 4;  // kills tried while the child starts
constexpr int idle_kills_per_epoch = 2;
constexpr int rounds_max = 200;
constexpr std::int64_t calibration_credits = 1000;

using testing_support::ms_since;

std::optional<std::uint64_t> env_number(const char* name) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') return std::nullopt;
    return std::strtoull(value, nullptr, 10);
}

// A kill-test child: sqlite_kill_child with these arguments.
class Child : public testing_support::ChildProcess {
public:
    Child(std::vector<std::string> args, std::string log_prefix)
        : ChildProcess(CHOREO_KILL_CHILD, std::move(args), std::move(log_prefix)) {}
};

class SqliteKill : public ::testing::Test {
protected:
    std::vector<std::string> args(const std::string& dir, std::int64_t credits, const std::string& mode) {
        return {"--dir", dir, "--credits", std::to_string(credits), "--mode", mode};
    }
    std::string log(const std::string& name) { return temp_.file("logs/" + name); }

    // Runs check or verify to its end; it must pass.
    void expect_checked(const std::string& dir, std::int64_t credits, const std::string& mode,
                        const std::string& name) {
        Child checker{args(dir, credits, mode), log(name)};
        ASSERT_TRUE(checker.wait(120'000)) << mode << " hung\n" << checker.describe();
        ASSERT_EQ(checker.exit_code(), 0) << mode << " failed (seed " << seed_ << ", credits " << credits << ")\n"
                                          << checker.describe();
        last_check_ = checker.out();
    }

    TempDir temp_{"choreo-kill"};
    std::uint64_t seed_ = 0;
    std::string last_check_;
};

TEST_F(SqliteKill, EveryInputAppliedOnceAndNothingLostAcrossSigkills) {
    const auto test_start = Clock::now();
    std::filesystem::create_directories(temp_.path() / "logs");
    seed_ = env_number("CHOREO_KILL_SEED").value_or(std::random_device{}());
    std::mt19937_64 random{seed_};
    auto uniform = [&](int low, int high) { return std::uniform_int_distribution<int>{low, high}(random); };
    std::printf("sqlite_kill: seed %llu (rerun with CHOREO_KILL_SEED=%llu)\n",
                static_cast<unsigned long long>(seed_), static_cast<unsigned long long>(seed_));

    // Calibration: one run without kills, also a baseline for verify. It sizes the workload so
    // that the kills land while it runs, on fast and slow (sanitizer) builds alike.
    std::int64_t credits = 0;
    if (std::optional<std::uint64_t> fixed = env_number("CHOREO_KILL_CREDITS")) {
        credits = static_cast<std::int64_t>(*fixed);
    } else {
        const std::string dir = temp_.file("calibrate");
        std::filesystem::create_directories(dir);
        Child calibration{args(dir, calibration_credits, "run"), log("calibrate")};
        ASSERT_TRUE(calibration.wait(120'000)) << calibration.describe();
        ASSERT_EQ(calibration.exit_code(), 0) << calibration.describe();
        const double rate_per_ms = static_cast<double>(calibration_credits) / calibration.age_ms();
        ASSERT_NO_FATAL_FAILURE(expect_checked(dir, calibration_credits, "verify", "calibrate-verify"));
        // About 3 s of uninterrupted work: the kill rounds (about 3.5 s of running time, much of
        // it spent starting up again) mostly end before it does; if not, a new epoch begins.
        credits = std::clamp<std::int64_t>(static_cast<std::int64_t>(rate_per_ms * 3000) / 20 * 20, 2000, 15'000);
        std::printf("sqlite_kill: calibration %lld credits in %.0f ms\n",
                    static_cast<long long>(calibration_credits), calibration.age_ms());
    }
    std::printf("sqlite_kill: %lld credits per epoch\n", static_cast<long long>(credits));

    int load_kills = 0;   // landed after the stores opened, before the work was done
    int early_kills = 0;  // landed before the child reported its stores open and checked
    int idle_kills = 0;   // landed after the work was done
    int missed_kills = 0; // the child had already exited
    int early_tries = 0;
    int startup_ms = 5;   // spawn to "start" in the last round that waited for it
    int rounds = 0;
    int epochs = 0;
    do {
        epochs++;
        const auto epoch_start = Clock::now();
        const std::string dir = temp_.file("epoch-" + std::to_string(epochs));
        std::filesystem::create_directories(dir);
        std::string epoch_log = "epoch-" + std::to_string(epochs);
        int epoch_kills = 0;
        bool done = false;
        // Kill rounds, until enough kills landed or the workload finished under them.
        while (!done && load_kills < load_kills_required) {
            ASSERT_LT(++rounds, rounds_max) << "too many rounds; seed " << seed_;
            // Most rounds kill 30–300 ms after the child reported its stores open (running its
            // services); some kill it while it starts: execs, opens and recovers the files.
            const bool early = early_tries < early_kills_wanted && uniform(0, 4) == 0;
            if (early) early_tries++;
            const std::string name = epoch_log + "-round-" + std::to_string(rounds);
            Child child{args(dir, credits, "run"), log(name)};
            int delay_ms = 0;
            if (early) {
                delay_ms = uniform(0, std::max(5, startup_ms));
                std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
            } else {
                while (child.out().find("start") == std::string::npos) {
                    ASSERT_FALSE(child.exited()) << "round " << rounds << " seed " << seed_ << "\n"
                                                 << child.describe();
                    ASSERT_LT(child.age_ms(), 60'000) << "no start\n" << child.describe();
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
                }
                startup_ms = static_cast<int>(child.age_ms());
                delay_ms = uniform(30, 300);
                std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
            }
            if (child.kill()) {
                epoch_kills++;
                // It reports nothing on stderr unless something is wrong (sanitizer reports too).
                ASSERT_EQ(child.err(), "") << "round " << rounds << " seed " << seed_ << "\n" << child.describe();
                const std::string out = child.out();
                const char* landed = "while starting";
                if (out.find("complete") != std::string::npos) {
                    idle_kills++;
                    landed = "idle";
                } else if (out.find("start") != std::string::npos) {
                    load_kills++;
                    landed = "under load";
                } else {
                    early_kills++;
                }
                const std::size_t line_end = out.find('\n');
                std::printf("sqlite_kill: round %2d: killed %3d ms %s, %s; %s\n", rounds, delay_ms,
                            early ? "after spawn" : "after start", landed, out.substr(0, line_end).c_str());
            } else {
                missed_kills++;
                ASSERT_EQ(child.exit_code(), 0) << "round " << rounds << " seed " << seed_ << "\n" << child.describe();
                ASSERT_NE(child.out().find("complete"), std::string::npos) << child.describe();
                std::printf("sqlite_kill: round %2d: finished before the kill; %s", rounds, child.out().c_str());
                done = true;  // the workload finished under the kills
            }
            // After every third kill, check the committed state from outside; the other restarts
            // open the files exactly as the kill left them (WAL and all).
            if (rounds % 3 == 0) {
                ASSERT_NO_FATAL_FAILURE(expect_checked(dir, credits, "check", name + "-check"));
            }
        }
        // Run to completion without kills.
        if (!done) {
            std::vector<std::string> finish = args(dir, credits, "run");
            finish.insert(finish.end(), {"--timeout-ms", "140000"});
            Child child{finish, log(epoch_log + "-finish")};
            const bool ended = child.wait(150'000);
            if (!ended || child.exit_code() != 0) {
                child.kill();
                Child checker{args(dir, credits, "check"), log(epoch_log + "-finish-check")};
                checker.wait(120'000);
                FAIL() << "no completion (a lost message?); seed " << seed_ << ", credits " << credits << "\n"
                       << child.describe() << "--- check: " << checker.describe();
            }
        }
        // Kills while idle: the work is done, the services wait for input.
        for (int idle = 0; idle < idle_kills_per_epoch; idle++) {
            std::vector<std::string> linger = args(dir, credits, "run");
            linger.push_back("--linger");
            const std::string name = epoch_log + "-idle-" + std::to_string(idle);
            Child child{linger, log(name)};
            while (child.out().find("complete") == std::string::npos) {
                ASSERT_FALSE(child.exited()) << "seed " << seed_ << "\n" << child.describe();
                ASSERT_LT(child.age_ms(), 60'000) << "idle run never completed\n" << child.describe();
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(uniform(0, 100)));
            ASSERT_TRUE(child.kill()) << child.describe();
            ASSERT_EQ(child.err(), "") << "seed " << seed_ << "\n" << child.describe();
            idle_kills++;
            epoch_kills++;
        }
        ASSERT_NO_FATAL_FAILURE(expect_checked(dir, credits, "verify", epoch_log + "-verify"));
        std::printf("sqlite_kill: epoch %d: %d kills, %.0f ms; verify: %s", epochs, epoch_kills,
                    ms_since(epoch_start), last_check_.c_str());
    } while (load_kills < load_kills_required);

    const double elapsed_ms = ms_since(test_start);
    std::printf("sqlite_kill: seed %llu, credits %lld, epochs %d, rounds %d, kills landed %d (under load %d, "
                "early %d, idle %d), missed %d, %.1f s\n",
                static_cast<unsigned long long>(seed_), static_cast<long long>(credits), epochs, rounds,
                load_kills + early_kills + idle_kills, load_kills, early_kills, idle_kills, missed_kills,
                elapsed_ms / 1000);
    RecordProperty("seed", std::to_string(seed_));
    RecordProperty("credits", std::to_string(credits));
    RecordProperty("kills_under_load", load_kills);
    EXPECT_GE(load_kills, load_kills_required);
    EXPECT_GE(load_kills + early_kills + idle_kills, 20);
}

}  // namespace
}  // namespace choreo
