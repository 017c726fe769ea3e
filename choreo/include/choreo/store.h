// choreo/store.h — the durability interface: one atomic commit per runtime batch.
//
// A Store keeps, for one service (one consumer), everything that must survive a crash:
//   - dedup rows: the ids already applied, each with the message's sent_at (design §4.1);
//   - the dedup horizon: sent_at below which rows may have been purged;
//   - keyed state written by handlers;
//   - outbox rows: messages committed for sending, kept until their send is confirmed;
//   - consumed positions per stream (Kafka partition offsets);
//   - dead letters: refused input with the reason and the raw bytes;
//   - durable promises (choreo/promise.h): created once, settled once;
//   - durable function executions and their histories (choreo/execution.h).
// The kernel reads through this interface first (dedup) and the runtime writes last (commit).
//
// Threading: a Store is used by one runtime thread at a time; adapters may allow concurrent
// readers (tests inspect a store while a service runs) and say so.
// Ownership: the caller owns the Store and keeps it alive longer than every Service using it.
//
//   CommitBatch batch;
//   batch.dedup.push_back({id, envelope.sent_at_ms});
//   batch.state.push_back({"order/42", bytes});
//   Status committed = store.commit(batch);   // all of it, or none of it
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "choreo/address.h"
#include "choreo/bytes.h"
#include "choreo/clock.h"
#include "choreo/execution.h"
#include "choreo/ids.h"
#include "choreo/promise.h"
#include "choreo/status.h"

namespace choreo {

struct DedupRow {
    MessageId id;
    TimeMs sent_at_ms = 0;
    friend bool operator==(const DedupRow&, const DedupRow&) = default;
};

// A handler's write to keyed state; an empty value (nullopt) erases the key.
struct StateWrite {
    std::string key;
    std::optional<Bytes> value;
    friend bool operator==(const StateWrite&, const StateWrite&) = default;
};

// A message committed for sending. `bytes` is the encoded envelope, sent unchanged by every
// retransmission, so `sent_at` is stamped exactly once (design §4.1).
struct OutboxRow {
    MessageId id;
    Address to;
    std::string route;      // the instance an anycast send is pinned to (design §4.6); may be empty
    std::string key;        // partition key (the correlation id)
    Bytes bytes;
    TimeMs sent_at_ms = 0;
    bool settled = false;   // confirmed delivered, or given up and dead-lettered
    TimeMs settled_at_ms = 0;
    friend bool operator==(const OutboxRow&, const OutboxRow&) = default;
};

enum class OutboxOutcome { delivered, dead_lettered };

struct OutboxSettle {
    MessageId id;
    TimeMs settled_at_ms = 0;
    OutboxOutcome outcome = OutboxOutcome::delivered;
    friend bool operator==(const OutboxSettle&, const OutboxSettle&) = default;
};

// The next offset to consume on one stream (for Kafka: "<topic>/<partition>").
struct ConsumedPosition {
    std::string stream;
    std::int64_t next_offset = 0;
    friend bool operator==(const ConsumedPosition&, const ConsumedPosition&) = default;
};

// Refused input. `key` is the message id when the input decoded, else a hash of the raw bytes,
// so the same refused input seen again updates one row (attempts, last_seen).
struct DeadLetter {
    std::string key;
    std::string reason;       // a stable name: "unknown_kind", "beyond_dedup_horizon", ...
    std::string detail;       // free text: the decode error, the exception message
    Bytes raw;                // the bytes as received, at most raw_bytes_max of them
    std::uint64_t raw_size = 0;  // the size of the input as received
    TimeMs first_seen_ms = 0;
    TimeMs last_seen_ms = 0;
    std::uint32_t attempts = 1;
    friend bool operator==(const DeadLetter&, const DeadLetter&) = default;
};

// Everything one runtime batch changes, committed atomically (design §4.2).
struct CommitBatch {
    std::vector<DedupRow> dedup;              // distinct ids (the caller's precondition)
    std::vector<StateWrite> state;            // applied in order; the last write to a key wins
    std::vector<OutboxRow> outbox;            // an id already in the outbox keeps its first row
    std::vector<OutboxSettle> outbox_settled; // unknown or already-settled ids are ignored
    std::vector<ConsumedPosition> positions;
    // Upserts by key, also within one batch: attempts add up, last_seen moves on, reason and
    // detail become the newest, first_seen and the raw bytes stay those first stored.
    std::vector<DeadLetter> dead_letters;
    // Created before the batch's settles apply. An id already present keeps its first row.
    std::vector<PromiseRow> promises_created;
    // Applied in order to pending promises only: the first settle wins, later ones and settles
    // of unknown ids are ignored (the kernel decides and reports conflicts before it commits).
    std::vector<PromiseSettle> promises_settled;
    // Upserts by id: the whole row is replaced (an execution moves from running to finished);
    // within one batch the last row for an id wins.
    std::vector<ExecutionRow> executions;
    // Upserts by (execution_id, position): a step's start record is replaced by its result;
    // within one batch the last record for a key wins.
    std::vector<HistoryRecord> history;
    // Dead letters removed because their message was redriven and applied (Service::redrive).
    // Applied after `dead_letters`; unknown keys are ignored.
    std::vector<std::string> dead_letters_deleted;

    bool empty() const {
        return dedup.empty() && state.empty() && outbox.empty() && outbox_settled.empty() &&
               positions.empty() && dead_letters.empty() && promises_created.empty() &&
               promises_settled.empty() && executions.empty() && history.empty() &&
               dead_letters_deleted.empty();
    }
};

struct PurgeRequest {
    TimeMs dedup_sent_before_ms = 0;     // purge dedup rows with sent_at < this; horizon moves here
    TimeMs outbox_settled_before_ms = 0; // purge settled outbox rows settled before this
    TimeMs promise_settled_before_ms = 0; // purge settled promises settled before this
    TimeMs execution_finished_before_ms = 0;  // purge finished executions (and their history)
    std::size_t rows_max = 1000;         // bound on rows deleted by one call
};

struct PurgeResult {
    std::size_t rows_deleted = 0;
    bool more = false;  // rows_max was reached: call again to continue
};

// Reads the kernel makes before it runs anything ("read first").
class StoreReader {
public:
    virtual ~StoreReader() = default;
    // found[i] tells whether ids[i] has a dedup row. `found` is resized to ids.size().
    virtual Status find_dedup(std::span<const MessageId> ids, std::vector<bool>& found) = 0;
    // Input with sent_at below the horizon and no dedup row is refused (design §4.1).
    virtual Result<TimeMs> dedup_horizon() = 0;
    virtual Result<std::optional<Bytes>> load_state(std::string_view key) = 0;
    // Durable functions' records (choreo/execution.h, choreo/promise.h).
    virtual Result<std::optional<PromiseRow>> find_promise(std::string_view id) = 0;
    virtual Result<std::optional<ExecutionRow>> find_execution(std::string_view id) = 0;
    // The outbox row of a sent id (settled or not, until purged).
    virtual Result<std::optional<OutboxRow>> find_outbox(const MessageId& id) = 0;
    // The execution's history in position order, at most `limit` records.
    virtual Result<std::vector<HistoryRecord>> load_history(std::string_view execution_id,
                                                            std::size_t limit) = 0;
};

class Store : public StoreReader {
public:
    struct Features {
        bool persistent = false;  // survives the process; false: lives as long as the object
        bool shared = false;      // several instances of a service may share it
    };
    virtual Features features() const = 0;

    // Applies the whole batch or nothing. Fails with:
    //   transient: try the same commit again later (locked, busy);
    //   aborted: a dedup id in the batch is already present (another instance applied it):
    //            re-run the batch's inputs, which the dedup read then drops;
    //   failed_precondition / closed: the store cannot go on (disk full, crashed): stop.
    // A batch that fails leaves no trace. Called by the runtime thread only.
    virtual Status commit(const CommitBatch& batch) = 0;

    // Unsettled outbox rows in id order, starting after `after` (nil id: from the start).
    virtual Result<std::vector<OutboxRow>> unsettled_outbox(const MessageId& after,
                                                            std::size_t limit) = 0;
    virtual Result<std::optional<std::int64_t>> consumed_position(std::string_view stream) = 0;

    virtual Result<std::optional<DeadLetter>> find_dead_letter(std::string_view key) = 0;
    // Dead letters in key order, starting after `after_key` ("" = from the start).
    virtual Result<std::vector<DeadLetter>> dead_letters(std::string_view after_key,
                                                         std::size_t limit) = 0;
    virtual Status delete_dead_letter(std::string_view key) = 0;

    // Pending promises that have a deadline, in id order after `after_id` ("" = from the start):
    // the timers a runtime arms again after a restart.
    virtual Result<std::vector<PromiseRow>> pending_promises_with_deadline(std::string_view after_id,
                                                                           std::size_t limit) = 0;

    // Running executions in id order after `after_id`: what a runtime resumes after a restart.
    virtual Result<std::vector<ExecutionRow>> running_executions(std::string_view after_id,
                                                                 std::size_t limit) = 0;

    // Deletes at most rows_max rows: dedup rows with sent_at < dedup_sent_before_ms (raising
    // the horizon to that value in the same atomic write, never lowering it) and settled outbox
    // rows settled before outbox_settled_before_ms, and settled promises settled before
    // promise_settled_before_ms (except children `<e>.<n>` of an execution e still running: its
    // replays read them), and finished executions (with their whole history) finished
    // before execution_finished_before_ms. Never deletes an unsettled outbox row, a pending
    // promise or a running execution. A purge stopped by rows_max may leave a finished
    // execution with part of its history (the next pass ends it), never history without its row.
    // The horizon may reach the cutoff before every row below it is gone (more = true): that is
    // safe, since a remembered id is a duplicate whatever its sent_at.
    virtual Result<PurgeResult> purge(const PurgeRequest& request) = 0;
};

}  // namespace choreo
