// store_conformance.h — the conformance suite every Store adapter runs (design §3, §4).
//
// The suite checks the contract in choreo/store.h, the part of it the product's rules rest on:
// a commit is all or nothing (§4.2), committed dedup rows are found (§4.1), the horizon moves
// with a purge and never back (§4.1), an outbox row stays until its send is settled and a purge
// never deletes an unsettled one (§4.2), the first outbox row for an id wins (§4.3), dead letters
// keep the reason and the raw bytes, and everything committed survives a crash.
//
// An adapter provides a StoreHarness: each test makes a new harness, so each test gets its own
// fresh database (a new file, a new schema, a new object), and instantiates the suite in its own
// test file, like Watermill's pubsub/tests:
//
//   #include "conformance/store_conformance.h"
//   using namespace choreo::conformance;
//
//   class SqliteHarness final : public StoreHarness {
//   public:
//       std::unique_ptr<choreo::Store> open() override { return open_sqlite(path_); }
//       std::unique_ptr<choreo::Store> crash_and_reopen(std::unique_ptr<choreo::Store> store) override {
//           abandon_without_closing(std::move(store));   // what a SIGKILL leaves behind
//           return open();
//       }
//   private:
//       TempFile path_;   // a new file per harness, deleted when the harness goes
//   };
//
//   INSTANTIATE_TEST_SUITE_P(Sqlite, StoreConformance,
//                            ::testing::Values(StoreHarnessFactory{
//                                "sqlite", [] { return std::make_unique<SqliteHarness>(); }}),
//                            StoreHarnessName);
//
// Test names then read `Sqlite/StoreConformance.CommitIsAllOrNothing/sqlite`. The adapter's
// test file adds tests only for what that adapter alone has (fault injection, file locking).
//
// Lifetimes: the fixture owns the harness and the store; the store is destroyed before the
// harness, so a harness may own the file or schema its stores use. Single-threaded.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "choreo/store.h"

namespace choreo::conformance {

// One per test: a fresh, empty database each time.
class StoreHarness {
public:
    virtual ~StoreHarness() = default;
    // Opens (or reopens) this harness's store. A store that is not persistent
    // (Features::persistent false) may come back empty from a second open().
    virtual std::unique_ptr<Store> open() = 0;
    // Simulates the process holding `store` dying (SIGKILL-like) and returns the store as a new
    // process reopens it: only what was committed survives. May return the same object (a store
    // that is not persistent keeps its data in the object, and that is what survives).
    virtual std::unique_ptr<Store> crash_and_reopen(std::unique_ptr<Store> store) = 0;
};

struct StoreHarnessFactory {
    std::string name;  // letters, digits and '_' only: it becomes part of the test name
    std::function<std::unique_ptr<StoreHarness>()> make;
};

// The name generator for INSTANTIATE_TEST_SUITE_P: the factory's name.
std::string StoreHarnessName(const ::testing::TestParamInfo<StoreHarnessFactory>& info);
// So gtest prints a factory by its name instead of as bytes.
void PrintTo(const StoreHarnessFactory& factory, std::ostream* out);

class StoreConformance : public ::testing::TestWithParam<StoreHarnessFactory> {
protected:
    void SetUp() override;
    void TearDown() override;

    // Replaces store_ by the store a new process finds after the old one was killed.
    void crash_and_reopen();

    // ASSERT_TRUE(commits(batch)) reports the failed status.
    ::testing::AssertionResult commits(const CommitBatch& batch);

    // Reads through store_. A failed read is reported as a test failure and gives an empty value,
    // so a test reads as a list of expectations.
    std::vector<bool> found(const std::vector<MessageId>& ids);
    TimeMs horizon_ms();
    std::optional<Bytes> state(std::string_view key);
    std::optional<OutboxRow> outbox(const MessageId& id);
    std::vector<OutboxRow> unsettled(const MessageId& after = MessageId{}, std::size_t limit = 100);
    std::optional<std::int64_t> position(std::string_view stream);
    std::vector<DeadLetter> letters(std::string_view after_key = "", std::size_t limit = 100);
    PurgeResult purge(const PurgeRequest& request);
    std::optional<PromiseRow> promise(std::string_view id);
    std::vector<std::string> timers(std::string_view after_id, std::size_t limit);  // their ids
    std::optional<ExecutionRow> execution(std::string_view id);
    std::vector<std::string> running_ids(std::string_view after_id = "", std::size_t limit = 100);
    std::vector<HistoryRecord> history_of(std::string_view execution_id, std::size_t limit = 100);

    std::unique_ptr<StoreHarness> harness_;
    std::unique_ptr<Store> store_;
};

}  // namespace choreo::conformance

// Printers so that a failed expectation shows rows as text rather than as raw bytes.
namespace choreo {
inline void PrintTo(const MessageId& id, std::ostream* out) { *out << id.to_string(); }
inline void PrintTo(StatusCode code, std::ostream* out) { *out << status_code_name(code); }
void PrintTo(const OutboxRow& row, std::ostream* out);
void PrintTo(const DeadLetter& letter, std::ostream* out);
void PrintTo(const PromiseRow& row, std::ostream* out);
void PrintTo(const ExecutionRow& row, std::ostream* out);
void PrintTo(const HistoryRecord& record, std::ostream* out);
}  // namespace choreo
