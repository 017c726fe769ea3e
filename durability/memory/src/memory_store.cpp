#include "choreo/durability/memory_store.h"

#include <algorithm>
#include <iterator>

namespace choreo {

Status MemoryStore::check_open() const {
    if (crashed_) return closed_error("crashed", "the store crashed; recover() it first");
    return Status{};
}

Status MemoryStore::find_dedup(std::span<const MessageId> ids, std::vector<bool>& found) {
    std::lock_guard lock{mutex_};
    CHOREO_RETURN_IF_ERROR(check_open());
    found.assign(ids.size(), false);
    for (std::size_t index = 0; index < ids.size(); index++) found[index] = dedup_.contains(ids[index]);
    return Status{};
}

Result<TimeMs> MemoryStore::dedup_horizon() {
    std::lock_guard lock{mutex_};
    CHOREO_RETURN_IF_ERROR(check_open());
    return horizon_ms_;
}

Result<std::optional<Bytes>> MemoryStore::load_state(std::string_view key) {
    std::lock_guard lock{mutex_};
    CHOREO_RETURN_IF_ERROR(check_open());
    auto found = state_.find(key);
    if (found == state_.end()) return std::optional<Bytes>{};
    return std::optional<Bytes>{found->second};
}

Status MemoryStore::commit(const CommitBatch& batch) {
    std::lock_guard lock{mutex_};
    CHOREO_RETURN_IF_ERROR(check_open());
    if (failures_left_ > 0) {
        failures_left_--;
        return failure_;
    }
    if (crash_point_ == CrashPoint::before_commit) {
        crash_point_ = CrashPoint::none;
        crashed_ = true;
        return closed_error("crashed", "injected crash before the commit");
    }
    for (const DedupRow& row : batch.dedup) {
        if (dedup_.contains(row.id)) {
            return aborted_error("dedup_conflict", "id " + row.id.to_string() + " is already applied");
        }
    }
    apply(batch);
    if (commit_listener_) commit_listener_(batch);
    if (crash_point_ == CrashPoint::after_commit) {
        crash_point_ = CrashPoint::none;
        crashed_ = true;
        return closed_error("crashed", "injected crash after the commit");
    }
    return Status{};
}

void MemoryStore::apply(const CommitBatch& batch) {
    for (const DedupRow& row : batch.dedup) {
        CHOREO_ASSERT(dedup_.emplace(row.id, row.sent_at_ms).second);
        dedup_by_sent_at_.emplace(row.sent_at_ms, row.id);
    }
    for (const StateWrite& write : batch.state) {
        if (write.value) {
            state_.insert_or_assign(write.key, *write.value);
        } else {
            state_.erase(write.key);
        }
    }
    for (const OutboxRow& row : batch.outbox) outbox_.emplace(row.id, row);  // first row wins
    for (const OutboxSettle& settle : batch.outbox_settled) {
        auto row = outbox_.find(settle.id);
        if (row == outbox_.end() || row->second.settled) continue;
        row->second.settled = true;
        row->second.settled_at_ms = settle.settled_at_ms;
    }
    for (const ConsumedPosition& position : batch.positions) {
        positions_.insert_or_assign(position.stream, position.next_offset);
    }
    for (const DeadLetter& letter : batch.dead_letters) {
        auto [slot, inserted] = dead_letters_.emplace(letter.key, letter);
        if (inserted) continue;
        DeadLetter& kept = slot->second;  // seen before: one row, attempts add up
        kept.reason = letter.reason;
        kept.detail = letter.detail;
        kept.last_seen_ms = std::max(kept.last_seen_ms, letter.last_seen_ms);
        kept.attempts += letter.attempts;
    }
    for (const std::string& key : batch.dead_letters_deleted) {
        auto found = dead_letters_.find(key);
        if (found != dead_letters_.end()) dead_letters_.erase(found);
    }
    apply_promises(batch);
    apply_executions(batch);
}

void MemoryStore::apply_promises(const CommitBatch& batch) {
    for (const PromiseRow& row : batch.promises_created) {
        CHOREO_ASSERT(row.state == PromiseState::pending);
        promises_.emplace(row.id, row);  // create is idempotent: the first row stays
    }
    for (const PromiseSettle& settle : batch.promises_settled) {
        auto row = promises_.find(settle.id);
        if (row == promises_.end() || row->second.state != PromiseState::pending) continue;
        apply_settle(row->second, settle);  // first settle wins
    }
}

// Both are upserts applied in batch order, so within one batch the last row for a key wins.
void MemoryStore::apply_executions(const CommitBatch& batch) {
    for (const ExecutionRow& row : batch.executions) {
        CHOREO_ASSERT(!row.id.empty());
        if (row.state == ExecutionState::running) CHOREO_ASSERT(row.finished_at_ms == 0);
        executions_.insert_or_assign(row.id, row);  // the whole row: running -> finished
    }
    for (const HistoryRecord& record : batch.history) {
        CHOREO_ASSERT(!record.execution_id.empty());
        // A step's `started` record is replaced by its `completed` or `failed` one.
        history_[record.execution_id].insert_or_assign(record.position, record);
    }
}

Result<std::optional<ExecutionRow>> MemoryStore::find_execution(std::string_view id) {
    std::lock_guard lock{mutex_};
    CHOREO_RETURN_IF_ERROR(check_open());
    auto found = executions_.find(id);
    if (found == executions_.end()) return std::optional<ExecutionRow>{};
    CHOREO_ASSERT(found->second.id == id);
    return std::optional<ExecutionRow>{found->second};
}

Result<std::vector<ExecutionRow>> MemoryStore::running_executions(std::string_view after_id,
                                                                  std::size_t limit) {
    std::lock_guard lock{mutex_};
    CHOREO_RETURN_IF_ERROR(check_open());
    std::vector<ExecutionRow> rows;
    for (auto row = executions_.upper_bound(after_id); row != executions_.end() && rows.size() < limit; ++row) {
        if (row->second.state == ExecutionState::running) rows.push_back(row->second);
    }
    CHOREO_ASSERT(rows.size() <= limit);
    return rows;
}

Result<std::vector<HistoryRecord>> MemoryStore::load_history(std::string_view execution_id, std::size_t limit) {
    std::lock_guard lock{mutex_};
    CHOREO_RETURN_IF_ERROR(check_open());
    std::vector<HistoryRecord> records;
    auto found = history_.find(execution_id);
    if (found == history_.end()) return records;
    CHOREO_ASSERT(!found->second.empty());
    for (auto record = found->second.begin(); record != found->second.end() && records.size() < limit; ++record) {
        CHOREO_ASSERT(record->second.position == record->first);
        records.push_back(record->second);
    }
    return records;
}

Result<std::optional<PromiseRow>> MemoryStore::find_promise(std::string_view id) {
    std::lock_guard lock{mutex_};
    CHOREO_RETURN_IF_ERROR(check_open());
    auto found = promises_.find(id);
    if (found == promises_.end()) return std::optional<PromiseRow>{};
    return std::optional<PromiseRow>{found->second};
}

Result<std::vector<PromiseRow>> MemoryStore::pending_promises_with_deadline(std::string_view after_id,
                                                                            std::size_t limit) {
    std::lock_guard lock{mutex_};
    CHOREO_RETURN_IF_ERROR(check_open());
    std::vector<PromiseRow> rows;
    for (auto row = promises_.upper_bound(after_id); row != promises_.end() && rows.size() < limit; ++row) {
        if (row->second.state == PromiseState::pending && row->second.deadline_ms != 0) rows.push_back(row->second);
    }
    return rows;
}

Result<std::optional<OutboxRow>> MemoryStore::find_outbox(const MessageId& id) {
    std::lock_guard lock{mutex_};
    CHOREO_RETURN_IF_ERROR(check_open());
    auto found = outbox_.find(id);
    if (found == outbox_.end()) return std::optional<OutboxRow>{};
    return std::optional<OutboxRow>{found->second};
}

Result<std::vector<OutboxRow>> MemoryStore::unsettled_outbox(const MessageId& after, std::size_t limit) {
    std::lock_guard lock{mutex_};
    CHOREO_RETURN_IF_ERROR(check_open());
    std::vector<OutboxRow> rows;
    for (auto row = outbox_.upper_bound(after); row != outbox_.end() && rows.size() < limit; ++row) {
        if (!row->second.settled) rows.push_back(row->second);
    }
    return rows;
}

Result<std::optional<std::int64_t>> MemoryStore::consumed_position(std::string_view stream) {
    std::lock_guard lock{mutex_};
    CHOREO_RETURN_IF_ERROR(check_open());
    auto found = positions_.find(stream);
    if (found == positions_.end()) return std::optional<std::int64_t>{};
    return std::optional<std::int64_t>{found->second};
}

Result<std::optional<DeadLetter>> MemoryStore::find_dead_letter(std::string_view key) {
    std::lock_guard lock{mutex_};
    CHOREO_RETURN_IF_ERROR(check_open());
    auto found = dead_letters_.find(key);
    if (found == dead_letters_.end()) return std::optional<DeadLetter>{};
    return std::optional<DeadLetter>{found->second};
}

Result<std::vector<DeadLetter>> MemoryStore::dead_letters(std::string_view after_key, std::size_t limit) {
    std::lock_guard lock{mutex_};
    CHOREO_RETURN_IF_ERROR(check_open());
    std::vector<DeadLetter> letters;
    for (auto letter = dead_letters_.upper_bound(after_key);
         letter != dead_letters_.end() && letters.size() < limit; ++letter) {
        letters.push_back(letter->second);
    }
    return letters;
}

Status MemoryStore::delete_dead_letter(std::string_view key) {
    std::lock_guard lock{mutex_};
    CHOREO_RETURN_IF_ERROR(check_open());
    auto found = dead_letters_.find(key);
    if (found == dead_letters_.end()) return not_found_error("no_dead_letter", std::string(key));
    dead_letters_.erase(found);
    return Status{};
}

Result<PurgeResult> MemoryStore::purge(const PurgeRequest& request) {
    std::lock_guard lock{mutex_};
    CHOREO_RETURN_IF_ERROR(check_open());
    CHOREO_ASSERT(request.rows_max > 0);
    PurgeResult result;
    // The horizon moves in the same atomic step as the first deletion, never backwards.
    horizon_ms_ = std::max(horizon_ms_, request.dedup_sent_before_ms);
    while (!dedup_by_sent_at_.empty() && dedup_by_sent_at_.begin()->first < request.dedup_sent_before_ms) {
        if (result.rows_deleted == request.rows_max) {
            result.more = true;
            return result;
        }
        dedup_.erase(dedup_by_sent_at_.begin()->second);
        dedup_by_sent_at_.erase(dedup_by_sent_at_.begin());
        result.rows_deleted++;
    }
    if (!purge_outbox(request, result)) return result;
    if (!purge_promises(request, result)) return result;
    purge_executions(request, result);
    CHOREO_ASSERT(result.rows_deleted <= request.rows_max);
    return result;
}

// Each returns false when rows_max stopped it (result.more is then set).
bool MemoryStore::purge_outbox(const PurgeRequest& request, PurgeResult& result) {
    for (auto row = outbox_.begin(); row != outbox_.end();) {
        const bool expired = row->second.settled && row->second.settled_at_ms < request.outbox_settled_before_ms;
        if (!expired) {
            ++row;
            continue;
        }
        if (result.rows_deleted == request.rows_max) {
            result.more = true;
            return false;
        }
        row = outbox_.erase(row);  // settled rows only: an unsettled row is never purged
        result.rows_deleted++;
    }
    return true;
}

bool MemoryStore::owned_by_running_execution(std::string_view promise_id) const {
    const std::optional<std::string_view> parent = parent_execution_id(promise_id);
    if (!parent) return false;
    auto execution = executions_.find(*parent);
    return execution != executions_.end() && execution->second.state == ExecutionState::running;
}

bool MemoryStore::purge_promises(const PurgeRequest& request, PurgeResult& result) {
    for (auto row = promises_.begin(); row != promises_.end();) {
        // A running execution replays against its children's promises: they stay while it runs.
        const bool expired = row->second.state != PromiseState::pending &&
                             row->second.settled_at_ms < request.promise_settled_before_ms &&
                             !owned_by_running_execution(row->first);
        if (!expired) {
            ++row;
            continue;
        }
        if (result.rows_deleted == request.rows_max) {
            result.more = true;
            return false;
        }
        row = promises_.erase(row);  // settled only: a pending promise is never purged
        result.rows_deleted++;
    }
    return true;
}

bool MemoryStore::purge_executions(const PurgeRequest& request, PurgeResult& result) {
    for (auto row = executions_.begin(); row != executions_.end();) {
        const bool expired = row->second.state != ExecutionState::running &&
                             row->second.finished_at_ms < request.execution_finished_before_ms;
        if (!expired) {
            ++row;  // running, however old: never purged, nor its history
            continue;
        }
        // The history goes first and the row last: a call that rows_max stops halfway leaves a
        // finished row, which the next call finds and finishes, never history without its row.
        if (!purge_history(row->first, request, result)) return false;
        if (result.rows_deleted == request.rows_max) {
            result.more = true;
            return false;
        }
        row = executions_.erase(row);
        result.rows_deleted++;
    }
    return true;
}

// Deletes from the last position down, so a history cut short by rows_max is still a prefix.
bool MemoryStore::purge_history(const std::string& execution_id, const PurgeRequest& request,
                                PurgeResult& result) {
    auto found = history_.find(execution_id);
    if (found == history_.end()) return true;
    std::map<std::uint32_t, HistoryRecord>& records = found->second;
    while (!records.empty()) {
        if (result.rows_deleted == request.rows_max) {
            result.more = true;
            return false;
        }
        records.erase(std::prev(records.end()));
        result.rows_deleted++;
    }
    history_.erase(found);  // no empty inner map is left behind
    return true;
}

void MemoryStore::inject_crash(CrashPoint point) {
    std::lock_guard lock{mutex_};
    crash_point_ = point;
}

void MemoryStore::fail_commits(std::size_t count, Status failure) {
    std::lock_guard lock{mutex_};
    CHOREO_ASSERT(count == 0 || !failure.ok());
    failures_left_ = count;
    failure_ = std::move(failure);
}

void MemoryStore::set_commit_listener(std::function<void(const CommitBatch&)> listener) {
    std::lock_guard lock{mutex_};
    commit_listener_ = std::move(listener);
}

void MemoryStore::recover() {
    std::lock_guard lock{mutex_};
    crashed_ = false;
    crash_point_ = CrashPoint::none;
}

bool MemoryStore::crashed() const {
    std::lock_guard lock{mutex_};
    return crashed_;
}

std::size_t MemoryStore::dedup_size() const {
    std::lock_guard lock{mutex_};
    return dedup_.size();
}

std::size_t MemoryStore::outbox_size() const {
    std::lock_guard lock{mutex_};
    return outbox_.size();
}

}  // namespace choreo
