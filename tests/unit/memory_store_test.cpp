// memory_store_test.cpp — MemoryStore runs the store conformance suite, plus its fault injection.
#include "choreo/durability/memory_store.h"

#include <gtest/gtest.h>

#include <memory>

#include "conformance/store_conformance.h"

namespace choreo {
namespace {

using conformance::StoreConformance;
using conformance::StoreHarness;
using conformance::StoreHarnessFactory;
using conformance::StoreHarnessName;

// A memory store lives as long as its object: a crash the process survives is a recover().
class MemoryStoreHarness final : public StoreHarness {
public:
    std::unique_ptr<Store> open() override { return std::make_unique<MemoryStore>(); }
    std::unique_ptr<Store> crash_and_reopen(std::unique_ptr<Store> store) override {
        auto* memory = dynamic_cast<MemoryStore*>(store.get());
        CHOREO_ASSERT(memory != nullptr);
        memory->recover();
        return store;
    }
};

INSTANTIATE_TEST_SUITE_P(Memory, StoreConformance,
                         ::testing::Values(StoreHarnessFactory{
                             "memory", [] { return std::make_unique<MemoryStoreHarness>(); }}),
                         StoreHarnessName);

// ---- what only the memory store has: fault injection ----------------------------------------

const MessageId seed_id{1, 1};
const MessageId batch_id{1, 2};

CommitBatch seed_batch() {
    CommitBatch batch;
    batch.dedup.push_back({seed_id, 100});
    batch.state.push_back({"order/42", bytes_of("placed")});
    return batch;
}

// Touches every table, so "nothing applied" and "all applied" can be checked table by table.
CommitBatch full_batch() {
    CommitBatch batch;
    batch.dedup.push_back({batch_id, 200});
    batch.state.push_back({"order/42", bytes_of("shipped")});
    OutboxRow row;
    row.id = MessageId{1, 3};
    row.to = Address::anycast("shipping");
    row.bytes = bytes_of("ship");
    row.sent_at_ms = 200;
    batch.outbox.push_back(row);
    batch.positions.push_back({"orders/0", 7});
    batch.dead_letters.push_back({"letter", "unknown_kind", "", bytes_of("raw"), 3, 200, 200, 1});
    return batch;
}

bool has_dedup(MemoryStore& store, const MessageId& id) {
    std::vector<bool> found;
    const MessageId ids[] = {id};
    EXPECT_TRUE(store.find_dedup(ids, found).ok());
    return found.size() == 1 && found[0];
}

void expect_full_batch_applied(MemoryStore& store, bool applied) {
    EXPECT_EQ(has_dedup(store, batch_id), applied);
    EXPECT_TRUE(has_dedup(store, seed_id));
    Result<std::optional<Bytes>> state = store.load_state("order/42");
    ASSERT_TRUE(state.ok());
    EXPECT_EQ(*state, bytes_of(applied ? "shipped" : "placed"));
    Result<std::optional<OutboxRow>> row = store.find_outbox(MessageId{1, 3});
    ASSERT_TRUE(row.ok());
    EXPECT_EQ(row->has_value(), applied);
    Result<std::optional<std::int64_t>> position = store.consumed_position("orders/0");
    ASSERT_TRUE(position.ok());
    EXPECT_EQ(position->has_value(), applied);
    Result<std::vector<DeadLetter>> letters = store.dead_letters("", 10);
    ASSERT_TRUE(letters.ok());
    EXPECT_EQ(letters->size(), applied ? 1u : 0u);
    EXPECT_EQ(store.dedup_size(), applied ? 2u : 1u);
    EXPECT_EQ(store.outbox_size(), applied ? 1u : 0u);
}

// A crashed store answers nothing until it is recovered, like a process that is gone.
void expect_every_call_closed(MemoryStore& store) {
    std::vector<bool> found;
    const MessageId ids[] = {seed_id};
    EXPECT_EQ(store.find_dedup(ids, found).code(), StatusCode::closed);
    EXPECT_EQ(store.dedup_horizon().status().code(), StatusCode::closed);
    EXPECT_EQ(store.load_state("order/42").status().code(), StatusCode::closed);
    EXPECT_EQ(store.commit(seed_batch()).code(), StatusCode::closed);
    EXPECT_EQ(store.commit(CommitBatch{}).code(), StatusCode::closed);
    EXPECT_EQ(store.find_outbox(seed_id).status().code(), StatusCode::closed);
    EXPECT_EQ(store.unsettled_outbox(MessageId{}, 10).status().code(), StatusCode::closed);
    EXPECT_EQ(store.consumed_position("orders/0").status().code(), StatusCode::closed);
    EXPECT_EQ(store.dead_letters("", 10).status().code(), StatusCode::closed);
    EXPECT_EQ(store.delete_dead_letter("letter").code(), StatusCode::closed);
    EXPECT_EQ(store.purge({.dedup_sent_before_ms = 1000}).status().code(), StatusCode::closed);
}

TEST(MemoryStore, FeaturesSayNotPersistentButShared) {
    MemoryStore store;
    EXPECT_FALSE(store.features().persistent);
    EXPECT_TRUE(store.features().shared);
}

TEST(MemoryStore, CrashBeforeCommitAppliesNothing) {
    MemoryStore store;
    ASSERT_TRUE(store.commit(seed_batch()).ok());
    store.inject_crash(MemoryStore::CrashPoint::before_commit);
    EXPECT_EQ(store.commit(full_batch()).code(), StatusCode::closed);
    EXPECT_TRUE(store.crashed());
    expect_every_call_closed(store);

    store.recover();
    EXPECT_FALSE(store.crashed());
    expect_full_batch_applied(store, /*applied=*/false);
    Result<TimeMs> horizon = store.dedup_horizon();  // the purge while crashed did not happen
    ASSERT_TRUE(horizon.ok());
    EXPECT_EQ(*horizon, 0);

    // The crash fired once: the same batch now commits.
    ASSERT_TRUE(store.commit(full_batch()).ok());
    expect_full_batch_applied(store, /*applied=*/true);
}

TEST(MemoryStore, CrashAfterCommitKeepsTheCommit) {
    MemoryStore store;
    ASSERT_TRUE(store.commit(seed_batch()).ok());
    store.inject_crash(MemoryStore::CrashPoint::after_commit);
    // The caller is told the commit failed, yet it is durable: the runtime must not assume
    // a failed commit left no trace, and a re-run finds the dedup row (design §4.1).
    EXPECT_EQ(store.commit(full_batch()).code(), StatusCode::closed);
    EXPECT_TRUE(store.crashed());
    expect_every_call_closed(store);

    store.recover();
    expect_full_batch_applied(store, /*applied=*/true);
    EXPECT_EQ(store.commit(full_batch()).code(), StatusCode::aborted);  // the replay is refused
}

TEST(MemoryStore, RecoverWithoutACrashChangesNothing) {
    MemoryStore store;
    ASSERT_TRUE(store.commit(seed_batch()).ok());
    store.inject_crash(MemoryStore::CrashPoint::before_commit);
    store.recover();  // disarms the injected crash too
    EXPECT_FALSE(store.crashed());
    ASSERT_TRUE(store.commit(full_batch()).ok());
    expect_full_batch_applied(store, /*applied=*/true);
}

TEST(MemoryStore, FailCommitsFailsExactlyThatManyAndAppliesNothing) {
    MemoryStore store;
    ASSERT_TRUE(store.commit(seed_batch()).ok());
    store.fail_commits(2, transient_error("busy", "injected"));
    for (int attempt = 0; attempt < 2; attempt++) {
        const Status failed = store.commit(full_batch());
        EXPECT_EQ(failed.code(), StatusCode::transient);
        EXPECT_EQ(failed.reason(), "busy");
        EXPECT_FALSE(store.crashed());  // a failed commit is not a crash: reads still work
        expect_full_batch_applied(store, /*applied=*/false);
    }
    ASSERT_TRUE(store.commit(full_batch()).ok());
    expect_full_batch_applied(store, /*applied=*/true);
}

TEST(MemoryStore, SizesCountRowsUntilPurged) {
    MemoryStore store;
    ASSERT_TRUE(store.commit(seed_batch()).ok());
    ASSERT_TRUE(store.commit(full_batch()).ok());
    EXPECT_EQ(store.dedup_size(), 2u);
    EXPECT_EQ(store.outbox_size(), 1u);
    Result<PurgeResult> purged = store.purge({.dedup_sent_before_ms = 150, .outbox_settled_before_ms = 1000});
    ASSERT_TRUE(purged.ok());
    EXPECT_EQ(purged->rows_deleted, 1u);
    EXPECT_EQ(store.dedup_size(), 1u);
    EXPECT_EQ(store.outbox_size(), 1u);  // unsettled: never purged
}

}  // namespace
}  // namespace choreo
