// store_promise_conformance.cpp — the Store conformance cases for durable promises
// (design §4.5): created once, settled once, timers found again after a crash.
#include "conformance/store_conformance.h"

namespace choreo::conformance {
namespace {

constexpr TimeMs base_ms = 1'700'000'000'000;
TimeMs at(TimeMs offset_ms) { return base_ms + offset_ms; }

PromiseRow pending(std::string id, TimeMs deadline_ms = 0) {
    return make_pending_promise(std::move(id), at(0), deadline_ms);
}

}  // namespace

std::optional<PromiseRow> StoreConformance::promise(std::string_view id) {
    Result<std::optional<PromiseRow>> row = store_->find_promise(id);
    EXPECT_TRUE(row.ok()) << "find_promise: " << row.status().to_string();
    return row.ok() ? *row : std::nullopt;
}

std::vector<std::string> StoreConformance::timers(std::string_view after_id, std::size_t limit) {
    Result<std::vector<PromiseRow>> rows = store_->pending_promises_with_deadline(after_id, limit);
    EXPECT_TRUE(rows.ok()) << "pending_promises_with_deadline: " << rows.status().to_string();
    std::vector<std::string> ids;
    if (rows.ok()) {
        for (const PromiseRow& row : *rows) ids.push_back(row.id);
    }
    return ids;
}

TEST_P(StoreConformance, PromiseCreateIsIdempotent) {
    CommitBatch first;
    first.promises_created = {pending("e1", at(500))};
    ASSERT_TRUE(commits(first));
    CommitBatch again;
    again.promises_created = {make_pending_promise("e1", at(100), at(900))};  // a replayed create
    ASSERT_TRUE(commits(again));
    EXPECT_EQ(promise("e1"), pending("e1", at(500)));  // the first row stays
    EXPECT_EQ(promise("unknown"), std::nullopt);
}

TEST_P(StoreConformance, PromiseFirstSettleWins) {
    CommitBatch batch;
    batch.promises_created = {pending("e1"), pending("e1.0")};
    batch.promises_settled = {{"e1.0", PromiseState::resolved, bytes_of("42"), at(10)},
                              {"e1.0", PromiseState::rejected, bytes_of("late"), at(11)}};
    ASSERT_TRUE(commits(batch));  // created and settled in one batch: creates apply first
    CommitBatch later;
    later.promises_settled = {{"e1.0", PromiseState::canceled, {}, at(20)},
                              {"e1", PromiseState::rejected, bytes_of("no"), at(21)},
                              {"never-created", PromiseState::resolved, {}, at(22)}};
    ASSERT_TRUE(commits(later));

    const std::optional<PromiseRow> child = promise("e1.0");
    ASSERT_TRUE(child.has_value());
    EXPECT_EQ(child->state, PromiseState::resolved);
    EXPECT_EQ(child->value, bytes_of("42"));
    EXPECT_EQ(child->settled_at_ms, at(10));
    EXPECT_EQ(promise("e1")->state, PromiseState::rejected);
    EXPECT_EQ(promise("e1")->value, bytes_of("no"));
    EXPECT_EQ(promise("never-created"), std::nullopt);  // a settle does not create
}

TEST_P(StoreConformance, PendingPromisesWithDeadlinesAreFoundForTimers) {
    CommitBatch batch;
    batch.promises_created = {pending("a", at(100)), pending("b"), pending("c", at(300)),
                              pending("d", at(400)), pending("e", at(50))};
    batch.promises_settled = {{"d", PromiseState::resolved, {}, at(1)}};
    ASSERT_TRUE(commits(batch));
    EXPECT_EQ(timers("", 10), (std::vector<std::string>{"a", "c", "e"}));  // id order
    EXPECT_EQ(timers("", 2), (std::vector<std::string>{"a", "c"}));
    EXPECT_EQ(timers("c", 10), (std::vector<std::string>{"e"}));
}

TEST_P(StoreConformance, PurgeDeletesSettledPromisesNeverPendingOnes) {
    CommitBatch batch;
    batch.promises_created = {pending("old"), pending("young"), pending("waiting", at(10))};
    batch.promises_settled = {{"old", PromiseState::resolved, {}, at(100)},
                              {"young", PromiseState::resolved, {}, at(300)}};
    ASSERT_TRUE(commits(batch));
    PurgeResult result = purge({.dedup_sent_before_ms = 0,
                                .outbox_settled_before_ms = 0,
                                .promise_settled_before_ms = at(200),
                                .rows_max = 10});
    EXPECT_EQ(result.rows_deleted, 1u);
    EXPECT_EQ(promise("old"), std::nullopt);
    EXPECT_TRUE(promise("young").has_value());
    (void)purge({.dedup_sent_before_ms = 0, .outbox_settled_before_ms = 0,
                 .promise_settled_before_ms = at(1'000'000), .rows_max = 10});
    EXPECT_EQ(promise("young"), std::nullopt);
    EXPECT_TRUE(promise("waiting").has_value());  // pending, however old
}

TEST_P(StoreConformance, PurgeKeepsChildPromisesOfARunningExecution) {
    CommitBatch batch;
    ExecutionRow running{"job", "f", {}, {}, 0, ExecutionState::running, at(0), 0};
    ExecutionRow finished{"done", "f", {}, {}, 0, ExecutionState::completed, at(0), at(50)};
    batch.executions = {running, finished};
    batch.promises_created = {pending("job.0"), pending("done.0"), pending("loose")};
    batch.promises_settled = {{"job.0", PromiseState::resolved, {}, at(10)},
                              {"done.0", PromiseState::resolved, {}, at(10)},
                              {"loose", PromiseState::resolved, {}, at(10)}};
    ASSERT_TRUE(commits(batch));
    (void)purge({.dedup_sent_before_ms = 0, .outbox_settled_before_ms = 0,
                 .promise_settled_before_ms = at(1'000'000), .rows_max = 100});
    EXPECT_TRUE(promise("job.0").has_value());  // "job" still runs and replays against it
    EXPECT_EQ(promise("done.0"), std::nullopt);
    EXPECT_EQ(promise("loose"), std::nullopt);
}

TEST_P(StoreConformance, PromisesSurviveACrash) {
    CommitBatch batch;
    batch.promises_created = {pending("e7", at(900)), pending("e7.0")};
    batch.promises_settled = {{"e7.0", PromiseState::rejected, bytes_of("why"), at(5)}};
    ASSERT_TRUE(commits(batch));
    const std::optional<PromiseRow> parent = promise("e7");
    const std::optional<PromiseRow> child = promise("e7.0");
    crash_and_reopen();
    EXPECT_EQ(promise("e7"), parent);
    EXPECT_EQ(promise("e7.0"), child);
    EXPECT_EQ(timers("", 10), std::vector<std::string>{"e7"});
}

}  // namespace choreo::conformance
