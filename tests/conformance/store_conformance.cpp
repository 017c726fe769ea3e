// store_conformance.cpp — the cases of the Store conformance suite (see store_conformance.h).
#include "conformance/store_conformance.h"

#include <utility>

#include "choreo/address.h"
#include "choreo/bytes.h"

namespace choreo {

void PrintTo(const OutboxRow& row, std::ostream* out) {
    *out << "OutboxRow{" << row.id.to_string() << " to=" << row.to.to_string() << " route=" << row.route
         << " key=" << row.key << " bytes=\"" << text_of(row.bytes) << "\" sent_at=" << row.sent_at_ms
         << " settled=" << row.settled << " settled_at=" << row.settled_at_ms << "}";
}

void PrintTo(const DeadLetter& letter, std::ostream* out) {
    *out << "DeadLetter{" << letter.key << " reason=" << letter.reason << " detail=" << letter.detail
         << " raw=" << letter.raw.size() << " bytes raw_size=" << letter.raw_size
         << " first_seen=" << letter.first_seen_ms << " last_seen=" << letter.last_seen_ms
         << " attempts=" << letter.attempts << "}";
}

void PrintTo(const PromiseRow& row, std::ostream* out) {
    *out << "PromiseRow{" << row.id << " " << promise_state_name(row.state) << " value=\"" << text_of(row.value)
         << "\" created=" << row.created_at_ms << " deadline=" << row.deadline_ms << " settled=" << row.settled_at_ms
         << "}";
}

void PrintTo(const ExecutionRow& row, std::ostream* out) {
    *out << "ExecutionRow{" << row.id << " " << execution_state_name(row.state) << " function=" << row.function
         << " args=" << row.args.size() << " bytes reply_to=" << row.reply_to.to_string() << " depth=" << row.depth
         << " created=" << row.created_at_ms << " finished=" << row.finished_at_ms << "}";
}

namespace {

// execution.h names kinds and states but not statuses: a printer has to.
std::string_view history_status_text(HistoryStatus status) {
    switch (status) {
        case HistoryStatus::started: return "started";
        case HistoryStatus::completed: return "completed";
        case HistoryStatus::failed: return "failed";
    }
    return "?";
}

}  // namespace

void PrintTo(const HistoryRecord& record, std::ostream* out) {
    *out << "HistoryRecord{" << record.execution_id << "@" << record.position << " "
         << history_kind_name(record.kind) << " " << record.name << " " << history_status_text(record.status)
         << " payload=\"" << text_of(record.payload) << "\"}";
}

}  // namespace choreo

namespace choreo::conformance {

std::string StoreHarnessName(const ::testing::TestParamInfo<StoreHarnessFactory>& info) {
    return info.param.name;
}

void PrintTo(const StoreHarnessFactory& factory, std::ostream* out) { *out << factory.name; }

// ---- the fixture --------------------------------------------------------------------------

void StoreConformance::SetUp() {
    ASSERT_TRUE(GetParam().make) << "the factory '" << GetParam().name << "' makes nothing";
    harness_ = GetParam().make();
    ASSERT_NE(harness_, nullptr);
    store_ = harness_->open();
    ASSERT_NE(store_, nullptr);
}

void StoreConformance::TearDown() {
    store_.reset();  // before the harness: the harness may own the store's file or schema
    harness_.reset();
}

void StoreConformance::crash_and_reopen() {
    ASSERT_NE(store_, nullptr);
    store_ = harness_->crash_and_reopen(std::move(store_));
    ASSERT_NE(store_, nullptr);
}

::testing::AssertionResult StoreConformance::commits(const CommitBatch& batch) {
    Status committed = store_->commit(batch);
    if (committed.ok()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "commit failed: " << committed.to_string();
}

namespace {

template <typename T>
T value_or_failure(Result<T> result, std::string_view call) {
    if (result.ok()) return std::move(result).value();
    ADD_FAILURE() << call << " failed: " << result.status().to_string();
    return T{};
}

}  // namespace

std::vector<bool> StoreConformance::found(const std::vector<MessageId>& ids) {
    std::vector<bool> result;
    Status status = store_->find_dedup(ids, result);
    EXPECT_TRUE(status.ok()) << "find_dedup failed: " << status.to_string();
    return result;
}

TimeMs StoreConformance::horizon_ms() { return value_or_failure(store_->dedup_horizon(), "dedup_horizon"); }

std::optional<Bytes> StoreConformance::state(std::string_view key) {
    return value_or_failure(store_->load_state(key), "load_state");
}

std::optional<OutboxRow> StoreConformance::outbox(const MessageId& id) {
    return value_or_failure(store_->find_outbox(id), "find_outbox");
}

std::vector<OutboxRow> StoreConformance::unsettled(const MessageId& after, std::size_t limit) {
    return value_or_failure(store_->unsettled_outbox(after, limit), "unsettled_outbox");
}

std::optional<std::int64_t> StoreConformance::position(std::string_view stream) {
    return value_or_failure(store_->consumed_position(stream), "consumed_position");
}

std::vector<DeadLetter> StoreConformance::letters(std::string_view after_key, std::size_t limit) {
    return value_or_failure(store_->dead_letters(after_key, limit), "dead_letters");
}

PurgeResult StoreConformance::purge(const PurgeRequest& request) {
    return value_or_failure(store_->purge(request), "purge");
}

// ---- helpers for making rows ----------------------------------------------------------------

namespace {

// Times above 2^32 ms, as real ones are, so an adapter that stores them in 32 bits fails.
constexpr TimeMs base_ms = 1'700'000'000'000;
TimeMs at(TimeMs offset_ms) { return base_ms + offset_ms; }

MessageId id_of(std::uint64_t n) { return MessageId{1, n}; }

// Dead letters are keyed by message id text in practice; these sort by n.
std::string letter_key(std::uint64_t n) { return MessageId{2, n}.to_string(); }

OutboxRow outbox_row(const MessageId& id, TimeMs sent_at_ms, std::string_view bytes) {
    OutboxRow row;
    row.id = id;
    row.to = Address::unicast("shipping", "2");
    row.route = "2";
    row.key = "order-42";
    row.bytes = bytes_of(bytes);
    row.sent_at_ms = sent_at_ms;
    return row;
}

OutboxRow settled_copy(OutboxRow row, TimeMs settled_at_ms) {
    row.settled = true;
    row.settled_at_ms = settled_at_ms;
    return row;
}

// Raw bytes with a zero byte and bytes above 0x7f, as undecodable input has.
Bytes raw_bytes(std::uint8_t seed) { return Bytes{0x00, 0xff, seed, 0x80, 0x00, 0x7f}; }

DeadLetter dead_letter(std::string key, TimeMs seen_ms, std::uint8_t seed) {
    DeadLetter letter;
    letter.key = std::move(key);
    letter.reason = "unknown_kind";
    letter.detail = "no handler for 'kind-" + std::to_string(seed) + "'";
    letter.raw = raw_bytes(seed);
    letter.raw_size = 4096 + seed;  // raw was cut to raw_bytes_max: the size says how big it was
    letter.first_seen_ms = seen_ms;
    letter.last_seen_ms = seen_ms;
    letter.attempts = 1;
    return letter;
}

std::vector<MessageId> ids_of(const std::vector<OutboxRow>& rows) {
    std::vector<MessageId> ids;
    for (const OutboxRow& row : rows) ids.push_back(row.id);
    return ids;
}

std::vector<std::string> keys_of(const std::vector<DeadLetter>& letters) {
    std::vector<std::string> keys;
    for (const DeadLetter& letter : letters) keys.push_back(letter.key);
    return keys;
}

}  // namespace

// ---- commit: all or nothing (design §4.2) ---------------------------------------------------

namespace {

// What the all-or-nothing test starts from.
CommitBatch seed_batch() {
    CommitBatch batch;
    batch.dedup.push_back({id_of(1), at(100)});
    batch.state.push_back({"kept", bytes_of("v1")});
    batch.state.push_back({"erased-by-the-failed-batch", bytes_of("v2")});
    batch.outbox.push_back(outbox_row(id_of(10), at(100), "ten"));
    batch.positions.push_back({"orders/0", 5});
    batch.dead_letters.push_back(dead_letter(letter_key(1), at(100), 1));
    return batch;
}

// Touches every table; with `conflict`, its last dedup row is already in the seed.
CommitBatch second_batch(bool conflict) {
    CommitBatch batch;
    batch.dedup.push_back({id_of(2), at(200)});
    if (conflict) batch.dedup.push_back({id_of(1), at(300)});
    batch.state.push_back({"kept", bytes_of("v9")});
    batch.state.push_back({"erased-by-the-failed-batch", std::nullopt});
    batch.state.push_back({"new", bytes_of("x")});
    batch.outbox.push_back(outbox_row(id_of(11), at(200), "eleven"));
    batch.outbox_settled.push_back({id_of(10), at(200), OutboxOutcome::delivered});
    batch.positions.push_back({"orders/0", 9});
    batch.positions.push_back({"orders/1", 1});
    batch.dead_letters.push_back(dead_letter(letter_key(1), at(200), 1));
    batch.dead_letters.push_back(dead_letter(letter_key(2), at(200), 2));
    return batch;
}

}  // namespace

TEST_P(StoreConformance, CommitIsAllOrNothing) {
    ASSERT_TRUE(commits(seed_batch()));
    const Status refused = store_->commit(second_batch(/*conflict=*/true));
    EXPECT_EQ(refused.code(), StatusCode::aborted) << refused.to_string();

    // No part of the refused batch is visible, table by table.
    EXPECT_EQ(found({id_of(1), id_of(2)}), (std::vector<bool>{true, false}));
    EXPECT_EQ(horizon_ms(), 0);
    EXPECT_EQ(state("kept"), bytes_of("v1"));
    EXPECT_EQ(state("erased-by-the-failed-batch"), bytes_of("v2"));
    EXPECT_EQ(state("new"), std::nullopt);
    EXPECT_EQ(outbox(id_of(11)), std::nullopt);
    EXPECT_EQ(outbox(id_of(10)), outbox_row(id_of(10), at(100), "ten"));  // still unsettled
    EXPECT_EQ(ids_of(unsettled()), std::vector<MessageId>{id_of(10)});
    EXPECT_EQ(position("orders/0"), 5);
    EXPECT_EQ(position("orders/1"), std::nullopt);
    EXPECT_EQ(letters(), std::vector<DeadLetter>{dead_letter(letter_key(1), at(100), 1)});

    // The same batch without the conflicting id then commits, all of it.
    ASSERT_TRUE(commits(second_batch(/*conflict=*/false)));
    EXPECT_EQ(found({id_of(1), id_of(2)}), (std::vector<bool>{true, true}));
    EXPECT_EQ(state("kept"), bytes_of("v9"));
    EXPECT_EQ(state("erased-by-the-failed-batch"), std::nullopt);
    EXPECT_EQ(state("new"), bytes_of("x"));
    EXPECT_EQ(outbox(id_of(10)), settled_copy(outbox_row(id_of(10), at(100), "ten"), at(200)));
    EXPECT_EQ(ids_of(unsettled()), std::vector<MessageId>{id_of(11)});
    EXPECT_EQ(position("orders/0"), 9);
    EXPECT_EQ(position("orders/1"), 1);
    const std::vector<DeadLetter> kept = letters();
    ASSERT_EQ(keys_of(kept), (std::vector<std::string>{letter_key(1), letter_key(2)}));
    EXPECT_EQ(kept[0].attempts, 2u);
}

TEST_P(StoreConformance, EmptyBatchCommitsAndChangesNothing) {
    ASSERT_TRUE(commits(CommitBatch{}));  // on an empty store
    EXPECT_EQ(found({id_of(1)}), std::vector<bool>{false});
    EXPECT_TRUE(unsettled().empty());
    EXPECT_TRUE(letters().empty());

    ASSERT_TRUE(commits(seed_batch()));
    ASSERT_TRUE(commits(CommitBatch{}));  // on a store with data
    EXPECT_EQ(found({id_of(1)}), std::vector<bool>{true});
    EXPECT_EQ(horizon_ms(), 0);
    EXPECT_EQ(state("kept"), bytes_of("v1"));
    EXPECT_EQ(unsettled(), std::vector<OutboxRow>{outbox_row(id_of(10), at(100), "ten")});
    EXPECT_EQ(position("orders/0"), 5);
    EXPECT_EQ(letters(), std::vector<DeadLetter>{dead_letter(letter_key(1), at(100), 1)});
}

// ---- dedup and the horizon (design §4.1) ----------------------------------------------------

TEST_P(StoreConformance, DedupFindsCommittedIdsInOrder) {
    CommitBatch batch;
    batch.dedup.push_back({id_of(1), at(100)});
    batch.dedup.push_back({id_of(3), at(100)});
    batch.dedup.push_back({MessageId{0x8000'0000'0000'0000, 7}, at(100)});  // top bit set
    ASSERT_TRUE(commits(batch));

    const std::vector<MessageId> asked{id_of(3), id_of(2), id_of(1), MessageId{0x8000'0000'0000'0000, 7},
                                       id_of(4), MessageId{7, 1}};
    EXPECT_EQ(found(asked), (std::vector<bool>{true, false, true, true, false, false}));

    // `found` is resized to the ids asked, whatever it held before.
    std::vector<bool> result(9, true);
    const std::vector<MessageId> unknown{id_of(2)};
    ASSERT_TRUE(store_->find_dedup(unknown, result).ok());
    EXPECT_EQ(result, std::vector<bool>{false});
    ASSERT_TRUE(store_->find_dedup({}, result).ok());
    EXPECT_TRUE(result.empty());
}

TEST_P(StoreConformance, PurgeForgetsOldDedupRowsAndRaisesTheHorizon) {
    EXPECT_EQ(horizon_ms(), 0);  // a fresh store has forgotten nothing
    CommitBatch batch;
    for (std::uint64_t n = 1; n <= 4; n++) batch.dedup.push_back({id_of(n), at(100 * n)});
    ASSERT_TRUE(commits(batch));

    const PurgeResult purged = purge({.dedup_sent_before_ms = at(300)});
    EXPECT_EQ(purged.rows_deleted, 2u);
    EXPECT_FALSE(purged.more);
    EXPECT_EQ(horizon_ms(), at(300));
    // sent_at < T is forgotten; sent_at == T and above is kept.
    EXPECT_EQ(found({id_of(1), id_of(2), id_of(3), id_of(4)}), (std::vector<bool>{false, false, true, true}));

    // The horizon never moves back: a later purge with a smaller cutoff keeps it.
    const PurgeResult smaller = purge({.dedup_sent_before_ms = at(150)});
    EXPECT_EQ(smaller.rows_deleted, 0u);
    EXPECT_EQ(horizon_ms(), at(300));
    EXPECT_EQ(found({id_of(3), id_of(4)}), (std::vector<bool>{true, true}));

    // A purge asking nothing of dedup (cutoff 0) keeps the horizon too.
    (void)purge({});
    EXPECT_EQ(horizon_ms(), at(300));
}

// The horizon is durable (design §4.1): after a crash the store still refuses what it forgot.
TEST_P(StoreConformance, TheHorizonSurvivesACrash) {
    CommitBatch batch;
    for (std::uint64_t n = 1; n <= 4; n++) batch.dedup.push_back({id_of(n), at(100 * n)});
    ASSERT_TRUE(commits(batch));
    (void)purge({.dedup_sent_before_ms = at(300)});
    ASSERT_EQ(horizon_ms(), at(300));
    crash_and_reopen();
    EXPECT_EQ(horizon_ms(), at(300));
    EXPECT_EQ(found({id_of(1), id_of(3)}), (std::vector<bool>{false, true}));
    (void)purge({.dedup_sent_before_ms = at(200)});  // and it still never moves back
    EXPECT_EQ(horizon_ms(), at(300));
}

TEST_P(StoreConformance, PurgeDeletesAtMostRowsMaxPerCall) {
    constexpr std::uint64_t rows = 5;
    constexpr std::size_t rows_max = 2;
    std::vector<MessageId> ids;
    CommitBatch batch;
    for (std::uint64_t n = 1; n <= rows; n++) {
        ids.push_back(id_of(n));
        batch.dedup.push_back({id_of(n), at(10 * static_cast<TimeMs>(n))});
    }
    batch.dedup.push_back({id_of(99), at(1000)});  // above the cutoff: never purged
    ASSERT_TRUE(commits(batch));

    // Whatever a partial purge forgot lies below the horizon, so a replay of it is refused.
    auto expect_forgotten_below_horizon = [&] {
        const std::vector<bool> left = found(ids);
        for (std::size_t index = 0; index < left.size(); index++) {
            if (!left[index]) {
                EXPECT_LT(at(10 * static_cast<TimeMs>(index + 1)), horizon_ms());
            }
        }
    };
    const PurgeRequest request{.dedup_sent_before_ms = at(500), .rows_max = rows_max};
    const PurgeResult first = purge(request);
    EXPECT_EQ(first.rows_deleted, rows_max);
    EXPECT_TRUE(first.more);
    expect_forgotten_below_horizon();
    std::size_t deleted_total = first.rows_deleted;
    bool more = first.more;
    for (std::size_t call = 0; more && call < rows; call++) {  // bounded: `rows` calls always do
        const PurgeResult next = purge(request);
        EXPECT_LE(next.rows_deleted, rows_max);
        deleted_total += next.rows_deleted;
        more = next.more;
        expect_forgotten_below_horizon();
    }
    EXPECT_FALSE(more);
    EXPECT_EQ(deleted_total, rows);
    EXPECT_EQ(found(ids), std::vector<bool>(rows, false));
    EXPECT_EQ(found({id_of(99)}), std::vector<bool>{true});
    EXPECT_EQ(horizon_ms(), at(500));
}

// ---- the outbox (design §4.2, §4.3) ---------------------------------------------------------

TEST_P(StoreConformance, OutboxRowIsKeptUntilSettled) {
    const OutboxRow row = outbox_row(id_of(5), at(100), "five");
    CommitBatch insert;
    insert.outbox.push_back(row);
    ASSERT_TRUE(commits(insert));
    EXPECT_EQ(outbox(id_of(5)), row);
    EXPECT_EQ(unsettled(), std::vector<OutboxRow>{row});

    CommitBatch settle;
    settle.outbox_settled.push_back({id_of(5), at(400), OutboxOutcome::delivered});
    ASSERT_TRUE(commits(settle));
    const std::optional<OutboxRow> settled = outbox(id_of(5));
    ASSERT_TRUE(settled.has_value());
    EXPECT_TRUE(settled->settled);
    EXPECT_EQ(settled->settled_at_ms, at(400));
    EXPECT_EQ(*settled, settled_copy(row, at(400)));  // the rest of the row unchanged
    EXPECT_TRUE(unsettled().empty());
}

TEST_P(StoreConformance, OutboxKeepsTheFirstRowForAnId) {
    const OutboxRow first = outbox_row(id_of(5), at(100), "first");
    CommitBatch insert;
    insert.outbox.push_back(first);
    ASSERT_TRUE(commits(insert));

    // A replayed step writing the same id again must not restamp sent_at (design §4.3).
    OutboxRow again = outbox_row(id_of(5), at(900), "second");
    again.to = Address::anycast("billing");
    again.route = "";
    CommitBatch replay;
    replay.outbox.push_back(again);
    ASSERT_TRUE(commits(replay));
    EXPECT_EQ(outbox(id_of(5)), first);
    EXPECT_EQ(unsettled(), std::vector<OutboxRow>{first});

    // Within one batch too, the first row for an id is the one kept.
    CommitBatch both;
    both.outbox.push_back(outbox_row(id_of(6), at(100), "first"));
    both.outbox.push_back(outbox_row(id_of(6), at(900), "second"));
    ASSERT_TRUE(commits(both));
    EXPECT_EQ(outbox(id_of(6)), outbox_row(id_of(6), at(100), "first"));
}

TEST_P(StoreConformance, OutboxSettleOfUnknownOrSettledIdIsIgnored) {
    const OutboxRow row = outbox_row(id_of(5), at(100), "five");
    CommitBatch insert;
    insert.outbox.push_back(row);
    ASSERT_TRUE(commits(insert));

    CommitBatch first;
    first.outbox_settled.push_back({id_of(6), at(300), OutboxOutcome::delivered});  // unknown
    first.outbox_settled.push_back({id_of(5), at(400), OutboxOutcome::dead_lettered});
    ASSERT_TRUE(commits(first));
    EXPECT_EQ(outbox(id_of(6)), std::nullopt);  // settling does not create a row
    EXPECT_EQ(outbox(id_of(5)), settled_copy(row, at(400)));

    CommitBatch second;  // already settled: the first settlement stays
    second.outbox_settled.push_back({id_of(5), at(700), OutboxOutcome::delivered});
    ASSERT_TRUE(commits(second));
    EXPECT_EQ(outbox(id_of(5)), settled_copy(row, at(400)));
    EXPECT_TRUE(unsettled().empty());
}

TEST_P(StoreConformance, UnsettledOutboxPagesInIdOrder) {
    const MessageId high{0x8000'0000'0000'0000, 0};  // sorts last: ids compare unsigned
    const std::vector<MessageId> inserted{id_of(3), high, id_of(1), MessageId{2, 0}, id_of(4), id_of(2)};
    CommitBatch batch;
    for (const MessageId& id : inserted) batch.outbox.push_back(outbox_row(id, at(100), "x"));
    batch.outbox_settled.push_back({id_of(4), at(200), OutboxOutcome::delivered});  // skipped
    ASSERT_TRUE(commits(batch));

    using Ids = std::vector<MessageId>;
    EXPECT_EQ(ids_of(unsettled()), (Ids{id_of(1), id_of(2), id_of(3), MessageId{2, 0}, high}));
    EXPECT_EQ(ids_of(unsettled(MessageId{}, 2)), (Ids{id_of(1), id_of(2)}));
    EXPECT_EQ(ids_of(unsettled(id_of(2), 2)), (Ids{id_of(3), MessageId{2, 0}}));
    EXPECT_EQ(ids_of(unsettled(id_of(3), 10)), (Ids{MessageId{2, 0}, high}));  // past a settled row
    EXPECT_EQ(ids_of(unsettled(MessageId{1, 100}, 10)), (Ids{MessageId{2, 0}, high}));  // not a row
    EXPECT_EQ(ids_of(unsettled(MessageId{2, 0}, 10)), (Ids{high}));
    EXPECT_TRUE(unsettled(high, 10).empty());
}

TEST_P(StoreConformance, PurgeNeverDeletesAnUnsettledOutboxRow) {
    const OutboxRow waiting = outbox_row(id_of(1), 1, "waiting");  // older than every cutoff
    CommitBatch insert;
    insert.outbox.push_back(waiting);
    insert.outbox.push_back(outbox_row(id_of(2), at(100), "early"));
    insert.outbox.push_back(outbox_row(id_of(3), at(100), "late"));
    ASSERT_TRUE(commits(insert));
    CommitBatch settle;
    settle.outbox_settled.push_back({id_of(2), at(100), OutboxOutcome::delivered});
    settle.outbox_settled.push_back({id_of(3), at(500), OutboxOutcome::delivered});
    ASSERT_TRUE(commits(settle));

    const PurgeResult purged = purge({.dedup_sent_before_ms = at(10'000), .outbox_settled_before_ms = at(300)});
    EXPECT_EQ(purged.rows_deleted, 1u);
    EXPECT_FALSE(purged.more);
    EXPECT_EQ(outbox(id_of(2)), std::nullopt);  // settled before the cutoff
    EXPECT_EQ(outbox(id_of(3)), settled_copy(outbox_row(id_of(3), at(100), "late"), at(500)));
    EXPECT_EQ(outbox(id_of(1)), waiting);

    const PurgeResult everything = purge({.dedup_sent_before_ms = at(20'000),
                                          .outbox_settled_before_ms = at(1'000'000)});
    EXPECT_EQ(everything.rows_deleted, 1u);
    EXPECT_EQ(outbox(id_of(3)), std::nullopt);
    EXPECT_EQ(outbox(id_of(1)), waiting);
    EXPECT_EQ(unsettled(), std::vector<OutboxRow>{waiting});
}

// ---- dead letters ---------------------------------------------------------------------------

TEST_P(StoreConformance, DeadLettersKeepReasonAndRawBytes) {
    CommitBatch batch;  // committed out of key order
    batch.dead_letters.push_back(dead_letter(letter_key(2), at(200), 2));
    batch.dead_letters.push_back(dead_letter(letter_key(1), at(100), 1));
    batch.dead_letters.push_back(dead_letter(letter_key(3), at(300), 3));
    ASSERT_TRUE(commits(batch));

    const std::vector<DeadLetter> listed = letters();
    EXPECT_EQ(listed, (std::vector<DeadLetter>{dead_letter(letter_key(1), at(100), 1),
                                               dead_letter(letter_key(2), at(200), 2),
                                               dead_letter(letter_key(3), at(300), 3)}));
    ASSERT_FALSE(listed.empty());
    EXPECT_EQ(listed[0].raw, raw_bytes(1));  // zero bytes and high bytes intact
    EXPECT_EQ(listed[0].raw_size, 4097u);
}

TEST_P(StoreConformance, DeadLetterSeenAgainUpdatesOneRow) {
    CommitBatch first;
    first.dead_letters.push_back(dead_letter(letter_key(1), at(100), 1));
    ASSERT_TRUE(commits(first));

    DeadLetter again = dead_letter(letter_key(1), at(900), 1);
    again.attempts = 2;
    CommitBatch second;
    second.dead_letters.push_back(again);
    ASSERT_TRUE(commits(second));

    const std::vector<DeadLetter> listed = letters();
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0].key, letter_key(1));
    EXPECT_EQ(listed[0].reason, "unknown_kind");
    EXPECT_EQ(listed[0].raw, raw_bytes(1));
    EXPECT_EQ(listed[0].first_seen_ms, at(100));
    EXPECT_EQ(listed[0].last_seen_ms, at(900));
    EXPECT_EQ(listed[0].attempts, 3u);
}

// Two copies of the same undecodable input in one batch share a key (a hash of the bytes).
TEST_P(StoreConformance, DeadLetterTwiceInOneBatchIsOneRow) {
    CommitBatch batch;
    batch.dead_letters.push_back(dead_letter(letter_key(1), at(100), 1));
    batch.dead_letters.push_back(dead_letter(letter_key(1), at(100), 1));
    ASSERT_TRUE(commits(batch));
    std::vector<DeadLetter> listed = letters();
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0].attempts, 2u);

    ASSERT_TRUE(commits(batch));  // and again, onto the existing row
    listed = letters();
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0].attempts, 4u);
    EXPECT_EQ(listed[0].first_seen_ms, at(100));
}

TEST_P(StoreConformance, FindDeadLetterByKey) {
    CommitBatch batch;
    for (std::uint64_t n = 1; n <= 3; n++) batch.dead_letters.push_back(dead_letter(letter_key(n), at(100), 1));
    ASSERT_TRUE(commits(batch));
    Result<std::optional<DeadLetter>> found = store_->find_dead_letter(letter_key(2));
    ASSERT_TRUE(found.ok()) << found.status().to_string();
    EXPECT_EQ(found.value(), std::optional<DeadLetter>{dead_letter(letter_key(2), at(100), 1)});
    Result<std::optional<DeadLetter>> missing = store_->find_dead_letter(letter_key(9));
    ASSERT_TRUE(missing.ok());
    EXPECT_FALSE(missing->has_value());
}

// A redriven message that was applied deletes its row in the same commit as its effects; the
// deletion applies after the batch's upserts, and an unknown key is ignored.
TEST_P(StoreConformance, DeadLettersDeletedInACommitGoWithIt) {
    CommitBatch first;
    for (std::uint64_t n = 1; n <= 3; n++) first.dead_letters.push_back(dead_letter(letter_key(n), at(100), 1));
    ASSERT_TRUE(commits(first));

    CommitBatch refused;  // the commit fails: the row must stay
    refused.dedup.push_back({id_of(1), at(100)});
    ASSERT_TRUE(commits(refused));
    refused.dead_letters_deleted.push_back(letter_key(1));
    EXPECT_EQ(store_->commit(refused).code(), StatusCode::aborted);
    EXPECT_EQ(keys_of(letters()), (std::vector<std::string>{letter_key(1), letter_key(2), letter_key(3)}));

    CommitBatch second;
    second.dedup.push_back({id_of(2), at(200)});
    second.dead_letters.push_back(dead_letter(letter_key(3), at(200), 1));
    second.dead_letters_deleted = {letter_key(2), letter_key(3), letter_key(7)};
    ASSERT_TRUE(commits(second));
    EXPECT_EQ(keys_of(letters()), (std::vector<std::string>{letter_key(1)}));
    crash_and_reopen();
    EXPECT_EQ(keys_of(letters()), (std::vector<std::string>{letter_key(1)}));
}

TEST_P(StoreConformance, DeleteDeadLetter) {
    CommitBatch batch;
    for (std::uint64_t n = 1; n <= 3; n++) batch.dead_letters.push_back(dead_letter(letter_key(n), at(100), 1));
    ASSERT_TRUE(commits(batch));

    EXPECT_TRUE(store_->delete_dead_letter(letter_key(2)).ok());
    EXPECT_EQ(keys_of(letters()), (std::vector<std::string>{letter_key(1), letter_key(3)}));
    EXPECT_EQ(store_->delete_dead_letter(letter_key(2)).code(), StatusCode::not_found);
    EXPECT_EQ(store_->delete_dead_letter("no-such-key").code(), StatusCode::not_found);
    EXPECT_EQ(keys_of(letters()), (std::vector<std::string>{letter_key(1), letter_key(3)}));
}

TEST_P(StoreConformance, DeadLettersPageInKeyOrder) {
    CommitBatch batch;
    for (std::uint64_t n : {4, 2, 5, 1, 3}) batch.dead_letters.push_back(dead_letter(letter_key(n), at(100), 1));
    ASSERT_TRUE(commits(batch));

    using Keys = std::vector<std::string>;
    EXPECT_EQ(keys_of(letters("", 2)), (Keys{letter_key(1), letter_key(2)}));
    EXPECT_EQ(keys_of(letters(letter_key(2), 2)), (Keys{letter_key(3), letter_key(4)}));
    EXPECT_EQ(keys_of(letters(letter_key(4), 2)), (Keys{letter_key(5)}));
    EXPECT_TRUE(letters(letter_key(5), 2).empty());
    // `after_key` need not be a stored key.
    EXPECT_EQ(keys_of(letters(letter_key(0), 1)), (Keys{letter_key(1)}));
}

// ---- keyed state and consumed positions -----------------------------------------------------

TEST_P(StoreConformance, StateIsSavedOverwrittenAndErased) {
    EXPECT_EQ(state("order/42"), std::nullopt);  // never written

    CommitBatch save;
    save.state.push_back({"order/42", bytes_of("placed")});
    save.state.push_back({"empty", Bytes{}});  // an empty value is a value, not an erase
    save.state.push_back({"binary", raw_bytes(9)});
    ASSERT_TRUE(commits(save));
    EXPECT_EQ(state("order/42"), bytes_of("placed"));
    EXPECT_EQ(state("empty"), Bytes{});
    EXPECT_EQ(state("binary"), raw_bytes(9));

    CommitBatch overwrite;
    overwrite.state.push_back({"order/42", bytes_of("shipped")});
    overwrite.state.push_back({"binary", std::nullopt});
    overwrite.state.push_back({"never-written", std::nullopt});  // erasing nothing is fine
    ASSERT_TRUE(commits(overwrite));
    EXPECT_EQ(state("order/42"), bytes_of("shipped"));
    EXPECT_EQ(state("binary"), std::nullopt);
    EXPECT_EQ(state("never-written"), std::nullopt);
    EXPECT_EQ(state("empty"), Bytes{});
}

TEST_P(StoreConformance, StateLastWriteInABatchWins) {
    CommitBatch batch;
    batch.state.push_back({"a", bytes_of("1")});
    batch.state.push_back({"a", std::nullopt});
    batch.state.push_back({"a", bytes_of("3")});
    batch.state.push_back({"b", bytes_of("1")});
    batch.state.push_back({"b", std::nullopt});
    batch.state.push_back({"c", bytes_of("1")});
    batch.state.push_back({"c", bytes_of("2")});
    ASSERT_TRUE(commits(batch));
    EXPECT_EQ(state("a"), bytes_of("3"));
    EXPECT_EQ(state("b"), std::nullopt);
    EXPECT_EQ(state("c"), bytes_of("2"));
}

TEST_P(StoreConformance, ConsumedPositionsAreKeptPerStream) {
    EXPECT_EQ(position("orders/0"), std::nullopt);
    CommitBatch first;
    first.positions.push_back({"orders/0", 5});
    first.positions.push_back({"orders/1", std::int64_t{1} << 40});  // above 32 bits
    ASSERT_TRUE(commits(first));
    EXPECT_EQ(position("orders/0"), 5);
    EXPECT_EQ(position("orders/1"), std::int64_t{1} << 40);

    CommitBatch second;
    second.positions.push_back({"orders/0", 9});
    ASSERT_TRUE(commits(second));
    EXPECT_EQ(position("orders/0"), 9);
    EXPECT_EQ(position("orders/1"), std::int64_t{1} << 40);  // other streams untouched
    EXPECT_EQ(position("orders/2"), std::nullopt);
}

// ---- survival -------------------------------------------------------------------------------

namespace {

// Everything the reopen test reads, so a before and an after can be compared.
struct Observed {
    std::vector<bool> found;
    TimeMs horizon_ms = 0;
    std::vector<std::optional<Bytes>> states;
    std::vector<std::optional<OutboxRow>> outbox;
    std::vector<OutboxRow> unsettled;
    std::vector<std::optional<std::int64_t>> positions;
    std::vector<DeadLetter> letters;
};

const std::vector<MessageId> observed_ids{id_of(1), id_of(2), id_of(3), id_of(4), id_of(10), id_of(11)};
const std::vector<std::string> observed_keys{"kept", "overwritten", "erased"};
const std::vector<std::string> observed_streams{"orders/0", "orders/1"};

// Three commits and a purge: dedup rows on both sides of the horizon, settled and unsettled
// outbox rows, a dead letter seen twice.
std::vector<CommitBatch> history() {
    CommitBatch first;
    first.dedup = {{id_of(1), at(100)}, {id_of(2), at(200)}};
    first.state = {{"kept", bytes_of("k")}, {"overwritten", bytes_of("old")}, {"erased", bytes_of("e")}};
    first.outbox = {outbox_row(id_of(10), at(100), "ten"), outbox_row(id_of(11), at(100), "eleven")};
    first.positions = {{"orders/0", 3}};
    first.dead_letters = {dead_letter(letter_key(1), at(100), 1)};
    CommitBatch second;
    second.dedup = {{id_of(3), at(300)}};
    second.state = {{"overwritten", bytes_of("new")}, {"erased", std::nullopt}};
    second.outbox_settled = {{id_of(10), at(300), OutboxOutcome::delivered}};
    second.positions = {{"orders/0", 4}, {"orders/1", 8}};
    second.dead_letters = {dead_letter(letter_key(1), at(300), 1), dead_letter(letter_key(2), at(300), 2)};
    return {first, second};
}

}  // namespace

TEST_P(StoreConformance, CommittedDataSurvivesACrash) {
    for (const CommitBatch& batch : history()) ASSERT_TRUE(commits(batch));
    (void)purge({.dedup_sent_before_ms = at(150)});  // forgets id 1, horizon at 150

    auto observe = [this] {
        Observed seen{found(observed_ids), horizon_ms(), {}, {}, unsettled(), {}, letters()};
        for (const std::string& key : observed_keys) seen.states.push_back(state(key));
        for (const MessageId& id : observed_ids) seen.outbox.push_back(outbox(id));
        for (const std::string& stream : observed_streams) seen.positions.push_back(position(stream));
        return seen;
    };
    const Observed before = observe();
    // Not vacuous: what was committed is there before the crash.
    EXPECT_EQ(before.found, (std::vector<bool>{false, true, true, false, false, false}));
    EXPECT_EQ(before.horizon_ms, at(150));
    EXPECT_EQ(before.states, (std::vector<std::optional<Bytes>>{bytes_of("k"), bytes_of("new"), std::nullopt}));
    EXPECT_EQ(ids_of(before.unsettled), std::vector<MessageId>{id_of(11)});
    EXPECT_EQ(before.positions, (std::vector<std::optional<std::int64_t>>{4, 8}));
    EXPECT_EQ(keys_of(before.letters), (std::vector<std::string>{letter_key(1), letter_key(2)}));

    crash_and_reopen();
    const Observed after = observe();
    EXPECT_EQ(after.found, before.found);
    EXPECT_EQ(after.horizon_ms, before.horizon_ms);
    EXPECT_EQ(after.states, before.states);
    EXPECT_EQ(after.outbox, before.outbox);
    EXPECT_EQ(after.unsettled, before.unsettled);
    EXPECT_EQ(after.positions, before.positions);
    EXPECT_EQ(after.letters, before.letters);

    // The reopened store still enforces what it remembers, and still takes commits.
    CommitBatch replay;
    replay.dedup = {{id_of(2), at(200)}};
    EXPECT_EQ(store_->commit(replay).code(), StatusCode::aborted);
    CommitBatch fresh;
    fresh.dedup = {{id_of(4), at(400)}};
    ASSERT_TRUE(commits(fresh));
    EXPECT_EQ(found({id_of(2), id_of(4)}), (std::vector<bool>{true, true}));
}

}  // namespace choreo::conformance
