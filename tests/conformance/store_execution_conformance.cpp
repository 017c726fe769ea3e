// store_execution_conformance.cpp — the Store conformance cases for durable function executions
// (choreo/execution.h): rows replaced whole, histories upserted by position and read back in
// position order, committed all or nothing (design §4.2), purged only once finished, and
// surviving a crash, since a resumed execution replays from its history (design §4.4).
#include <cstdint>
#include <string>
#include <utility>

#include "choreo/address.h"
#include "choreo/bytes.h"
#include "conformance/store_conformance.h"

namespace choreo::conformance {
namespace {

constexpr TimeMs base_ms = 1'700'000'000'000;
TimeMs at(TimeMs offset_ms) { return base_ms + offset_ms; }

ExecutionRow running(std::string id, TimeMs created_at_ms = at(0)) {
    ExecutionRow row;
    row.id = std::move(id);
    row.function = "ship_order";
    row.args = Bytes{0x92, 0x01, 0xc4, 0x02, 0x00, 0xff};  // msgpack [1, bin "\0\xff"]: not text
    row.reply_to = Address::unicast("orders", "1");
    row.depth = 1;
    row.created_at_ms = created_at_ms;
    return row;
}

ExecutionRow finished(ExecutionRow row, ExecutionState state, TimeMs finished_at_ms) {
    row.state = state;
    row.finished_at_ms = finished_at_ms;
    return row;
}

HistoryRecord record(std::string execution_id, std::uint32_t position,
                     HistoryStatus status = HistoryStatus::started, std::string_view payload = "") {
    HistoryRecord result;
    result.execution_id = std::move(execution_id);
    result.position = position;
    result.kind = HistoryKind::step;
    result.name = "step-" + std::to_string(position);
    result.status = status;
    result.payload = bytes_of(payload);
    return result;
}

std::vector<std::uint32_t> positions_of(const std::vector<HistoryRecord>& records) {
    std::vector<std::uint32_t> positions;
    for (const HistoryRecord& each : records) positions.push_back(each.position);
    return positions;
}

using Ids = std::vector<std::string>;
using Positions = std::vector<std::uint32_t>;

}  // namespace

std::optional<ExecutionRow> StoreConformance::execution(std::string_view id) {
    Result<std::optional<ExecutionRow>> row = store_->find_execution(id);
    EXPECT_TRUE(row.ok()) << "find_execution: " << row.status().to_string();
    return row.ok() ? *row : std::nullopt;
}

std::vector<std::string> StoreConformance::running_ids(std::string_view after_id, std::size_t limit) {
    Result<std::vector<ExecutionRow>> rows = store_->running_executions(after_id, limit);
    EXPECT_TRUE(rows.ok()) << "running_executions: " << rows.status().to_string();
    std::vector<std::string> ids;
    if (!rows.ok()) return ids;
    EXPECT_LE(rows->size(), limit);
    for (const ExecutionRow& row : *rows) {
        EXPECT_EQ(row.state, ExecutionState::running) << row.id;
        ids.push_back(row.id);
    }
    return ids;
}

std::vector<HistoryRecord> StoreConformance::history_of(std::string_view execution_id, std::size_t limit) {
    Result<std::vector<HistoryRecord>> records = store_->load_history(execution_id, limit);
    EXPECT_TRUE(records.ok()) << "load_history: " << records.status().to_string();
    if (!records.ok()) return {};
    EXPECT_LE(records->size(), limit);
    for (const HistoryRecord& each : *records) EXPECT_EQ(each.execution_id, execution_id);
    return *records;
}

// ---- executions -----------------------------------------------------------------------------

TEST_P(StoreConformance, ExecutionIsStoredAndReplacedWhole) {
    CommitBatch start;
    start.executions = {running("e1")};
    ASSERT_TRUE(commits(start));
    EXPECT_EQ(execution("e1"), running("e1"));
    EXPECT_EQ(execution("unknown"), std::nullopt);
    EXPECT_EQ(execution("e"), std::nullopt);  // a prefix of an id is not the id

    // The finished row replaces every column, not only the state.
    ExecutionRow done = finished(running("e1"), ExecutionState::completed, at(700));
    done.args = bytes_of("replaced");
    done.reply_to = Address{};
    CommitBatch finish;
    finish.executions = {done};
    ASSERT_TRUE(commits(finish));
    EXPECT_EQ(execution("e1"), done);

    // Within one batch the rows apply in order: the last one for an id is what stays.
    const ExecutionRow failed = finished(running("e2"), ExecutionState::failed, at(800));
    CommitBatch both;
    both.executions = {running("e2"), failed};
    ASSERT_TRUE(commits(both));
    EXPECT_EQ(execution("e2"), failed);
    EXPECT_TRUE(running_ids().empty());
}

TEST_P(StoreConformance, RunningExecutionsPageInIdOrder) {
    CommitBatch batch;  // committed out of id order; "e10" sorts between "e1" and "e2" as text
    batch.executions = {running("e3"), running("e10"), finished(running("e2"), ExecutionState::completed, at(5)),
                        running("e1"), finished(running("e4"), ExecutionState::failed, at(6)), running("e5")};
    ASSERT_TRUE(commits(batch));

    EXPECT_EQ(running_ids(), (Ids{"e1", "e10", "e3", "e5"}));
    EXPECT_EQ(running_ids("", 2), (Ids{"e1", "e10"}));
    EXPECT_EQ(running_ids("e10", 2), (Ids{"e3", "e5"}));
    EXPECT_EQ(running_ids("e2", 10), (Ids{"e3", "e5"}));  // after a finished row
    EXPECT_EQ(running_ids("e0", 10), (Ids{"e1", "e10", "e3", "e5"}));  // after no row
    EXPECT_EQ(running_ids("e3", 1), (Ids{"e5"}));
    EXPECT_TRUE(running_ids("e5", 10).empty());

    CommitBatch finish;  // a finished execution leaves the list
    finish.executions = {finished(running("e10"), ExecutionState::completed, at(9))};
    ASSERT_TRUE(commits(finish));
    EXPECT_EQ(running_ids(), (Ids{"e1", "e3", "e5"}));
    EXPECT_EQ(execution("e10"), finished(running("e10"), ExecutionState::completed, at(9)));
}

// ---- history --------------------------------------------------------------------------------

TEST_P(StoreConformance, HistoryUpsertsByExecutionAndPosition) {
    CommitBatch first;  // "e1.0" is a child promise id of "e1": a prefix must not mix them
    first.executions = {running("e1"), running("e1.0")};
    first.history = {record("e1", 2), record("e1", 0, HistoryStatus::completed, "zero"), record("e1", 1),
                     record("e1.0", 1, HistoryStatus::completed, "child")};
    ASSERT_TRUE(commits(first));
    EXPECT_EQ(positions_of(history_of("e1")), (Positions{0, 1, 2}));
    EXPECT_EQ(history_of("e1.0"), std::vector<HistoryRecord>{record("e1.0", 1, HistoryStatus::completed, "child")});

    // The step at position 1 returns: its `started` record is replaced by the result.
    CommitBatch completed;
    completed.history = {record("e1", 1, HistoryStatus::completed, "one")};
    ASSERT_TRUE(commits(completed));
    // A step that starts and fails in one batch: the later record for the position stays.
    CommitBatch in_one_batch;
    in_one_batch.history = {record("e1", 3), record("e1", 3, HistoryStatus::failed, "boom")};
    ASSERT_TRUE(commits(in_one_batch));

    const std::vector<HistoryRecord> expected{
        record("e1", 0, HistoryStatus::completed, "zero"), record("e1", 1, HistoryStatus::completed, "one"),
        record("e1", 2), record("e1", 3, HistoryStatus::failed, "boom")};
    EXPECT_EQ(history_of("e1"), expected);
    EXPECT_EQ(history_of("e1.0"), std::vector<HistoryRecord>{record("e1.0", 1, HistoryStatus::completed, "child")});
    EXPECT_TRUE(history_of("e").empty());
    EXPECT_TRUE(history_of("unknown").empty());
}

TEST_P(StoreConformance, HistoryLoadsInNumericPositionOrder) {
    // Positions above 2^31 too, so an adapter that keeps them in a signed 32-bit column fails.
    const Positions committed{2, 10, 0, 3'000'000'000u, 11, 1, 9};
    CommitBatch batch;
    batch.executions = {running("e1")};
    for (std::uint32_t position : committed) batch.history.push_back(record("e1", position));
    HistoryRecord call = record("e1", 9, HistoryStatus::started);
    call.kind = HistoryKind::call;
    call.name = "billing charge";
    batch.history.back() = call;
    ASSERT_TRUE(commits(batch));

    const std::vector<HistoryRecord> all = history_of("e1");
    EXPECT_EQ(positions_of(all), (Positions{0, 1, 2, 9, 10, 11, 3'000'000'000u}));  // 2 before 10
    ASSERT_EQ(all.size(), 7u);
    EXPECT_EQ(all[3], call);  // every field read back
    EXPECT_EQ(positions_of(history_of("e1", 3)), (Positions{0, 1, 2}));
    EXPECT_EQ(positions_of(history_of("e1", 5)), (Positions{0, 1, 2, 9, 10}));
    EXPECT_EQ(positions_of(history_of("e1", 1)), (Positions{0}));
}

// ---- all or nothing (design §4.2) ------------------------------------------------------------

TEST_P(StoreConformance, ExecutionCommitIsAllOrNothing) {
    const MessageId applied{3, 1};
    const MessageId fresh{3, 2};
    CommitBatch seed;
    seed.dedup = {{applied, at(100)}};
    seed.executions = {running("e1")};
    seed.history = {record("e1", 0)};
    ASSERT_TRUE(commits(seed));

    auto step = [&](bool conflict) {
        CommitBatch batch;
        batch.dedup = {{fresh, at(200)}};
        if (conflict) batch.dedup.push_back({applied, at(200)});  // another instance applied it
        batch.executions = {finished(running("e1"), ExecutionState::completed, at(200)), running("e2")};
        batch.history = {record("e1", 0, HistoryStatus::completed, "r"), record("e1", 1), record("e2", 0)};
        return batch;
    };
    const Status refused = store_->commit(step(/*conflict=*/true));
    EXPECT_EQ(refused.code(), StatusCode::aborted) << refused.to_string();
    EXPECT_EQ(execution("e1"), running("e1"));
    EXPECT_EQ(execution("e2"), std::nullopt);
    EXPECT_EQ(history_of("e1"), std::vector<HistoryRecord>{record("e1", 0)});
    EXPECT_TRUE(history_of("e2").empty());
    EXPECT_EQ(running_ids(), Ids{"e1"});

    ASSERT_TRUE(commits(step(/*conflict=*/false)));  // the same batch without the conflict: all of it
    EXPECT_EQ(execution("e1"), finished(running("e1"), ExecutionState::completed, at(200)));
    EXPECT_EQ(execution("e2"), running("e2"));
    EXPECT_EQ(history_of("e1"),
              (std::vector<HistoryRecord>{record("e1", 0, HistoryStatus::completed, "r"), record("e1", 1)}));
    EXPECT_EQ(positions_of(history_of("e2")), Positions{0});
    EXPECT_EQ(running_ids(), Ids{"e2"});
}

// ---- purge ----------------------------------------------------------------------------------

namespace {

// Three finished executions on both sides of the cutoff at(200), and a running one older than all.
CommitBatch executions_to_purge() {
    CommitBatch batch;
    batch.executions = {finished(running("old-done"), ExecutionState::completed, at(100)),
                        finished(running("old-failed"), ExecutionState::failed, at(150)),
                        finished(running("young"), ExecutionState::completed, at(500)),
                        running("ancient", 1)};
    batch.history = {record("old-done", 0), record("old-done", 1), record("old-done", 2), record("old-failed", 0),
                     record("young", 0), record("young", 1), record("ancient", 0), record("ancient", 1)};
    return batch;
}

PurgeRequest executions_finished_before(TimeMs cutoff_ms, std::size_t rows_max) {
    return {.dedup_sent_before_ms = 0,
            .outbox_settled_before_ms = 0,
            .promise_settled_before_ms = 0,
            .execution_finished_before_ms = cutoff_ms,
            .rows_max = rows_max};
}

}  // namespace

TEST_P(StoreConformance, PurgeDeletesFinishedExecutionsWithTheirHistory) {
    ASSERT_TRUE(commits(executions_to_purge()));
    const PurgeResult result = purge(executions_finished_before(at(200), 100));
    EXPECT_EQ(result.rows_deleted, 6u);  // two rows and their four history records
    EXPECT_FALSE(result.more);
    EXPECT_EQ(execution("old-done"), std::nullopt);
    EXPECT_EQ(execution("old-failed"), std::nullopt);
    EXPECT_TRUE(history_of("old-done").empty());
    EXPECT_TRUE(history_of("old-failed").empty());
    EXPECT_EQ(execution("young"), finished(running("young"), ExecutionState::completed, at(500)));
    EXPECT_EQ(positions_of(history_of("young")), (Positions{0, 1}));
    EXPECT_EQ(execution("ancient"), running("ancient", 1));  // running, however old
    EXPECT_EQ(positions_of(history_of("ancient")), (Positions{0, 1}));

    const PurgeResult later = purge(executions_finished_before(at(1'000'000), 100));
    EXPECT_EQ(later.rows_deleted, 3u);
    EXPECT_EQ(execution("young"), std::nullopt);
    EXPECT_TRUE(history_of("young").empty());
    EXPECT_EQ(running_ids(), Ids{"ancient"});
    EXPECT_EQ(positions_of(history_of("ancient")), (Positions{0, 1}));
}

TEST_P(StoreConformance, PurgeOfExecutionsIsBoundedByRowsMax) {
    CommitBatch batch = executions_to_purge();  // 6 rows to purge before at(200) ...
    batch.executions.push_back(finished(running("long"), ExecutionState::completed, at(120)));
    for (std::uint32_t position = 0; position < 5; position++) batch.history.push_back(record("long", position));
    ASSERT_TRUE(commits(batch));  // ... and 6 more: one history longer than rows_max

    const Ids purged{"old-done", "old-failed", "long"};
    std::size_t rows_deleted = 0;
    std::size_t calls = 0;
    for (PurgeResult result{.rows_deleted = 0, .more = true}; result.more; calls++) {
        ASSERT_LT(calls, 12u) << "purge does not finish";
        result = purge(executions_finished_before(at(200), 2));
        EXPECT_LE(result.rows_deleted, 2u);
        if (result.more) {
            EXPECT_EQ(result.rows_deleted, 2u);
        }
        rows_deleted += result.rows_deleted;
        // Between calls no history is left behind without its row: it could never be purged.
        for (const std::string& id : purged) {
            if (!execution(id).has_value()) {
                EXPECT_TRUE(history_of(id).empty()) << id << " after call " << calls;
            }
        }
    }
    EXPECT_EQ(rows_deleted, 12u);
    EXPECT_GE(calls, 6u);
    for (const std::string& id : purged) {
        EXPECT_EQ(execution(id), std::nullopt) << id;
        EXPECT_TRUE(history_of(id).empty()) << id;
    }
    EXPECT_EQ(positions_of(history_of("young")), (Positions{0, 1}));
    EXPECT_EQ(positions_of(history_of("ancient")), (Positions{0, 1}));
    EXPECT_EQ(running_ids(), Ids{"ancient"});
}

// ---- crash ----------------------------------------------------------------------------------

TEST_P(StoreConformance, ExecutionsAndHistorySurviveACrash) {
    CommitBatch batch;
    batch.executions = {running("e7"), finished(running("e8"), ExecutionState::failed, at(40))};
    batch.history = {record("e7", 0, HistoryStatus::completed, "paid"), record("e7", 1),
                     record("e8", 0, HistoryStatus::failed, "declined")};
    ASSERT_TRUE(commits(batch));
    const std::optional<ExecutionRow> resumed = execution("e7");
    const std::optional<ExecutionRow> failed = execution("e8");
    const std::vector<HistoryRecord> resumed_history = history_of("e7");
    const std::vector<HistoryRecord> failed_history = history_of("e8");
    // Not vacuous: what was committed is there before the crash.
    EXPECT_EQ(resumed, running("e7"));
    EXPECT_EQ(positions_of(resumed_history), (Positions{0, 1}));
    EXPECT_EQ(failed_history.size(), 1u);

    crash_and_reopen();
    EXPECT_EQ(execution("e7"), resumed);
    EXPECT_EQ(execution("e8"), failed);
    EXPECT_EQ(history_of("e7"), resumed_history);
    EXPECT_EQ(history_of("e8"), failed_history);
    EXPECT_EQ(running_ids(), Ids{"e7"});  // what a restarted runtime resumes

    // The reopened store goes on upserting the same rows.
    CommitBatch resume;
    resume.executions = {finished(running("e7"), ExecutionState::completed, at(90))};
    resume.history = {record("e7", 1, HistoryStatus::completed, "shipped")};
    ASSERT_TRUE(commits(resume));
    EXPECT_EQ(history_of("e7"), (std::vector<HistoryRecord>{record("e7", 0, HistoryStatus::completed, "paid"),
                                                            record("e7", 1, HistoryStatus::completed, "shipped")}));
    EXPECT_TRUE(running_ids().empty());
}

}  // namespace choreo::conformance
