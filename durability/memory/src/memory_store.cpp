#include "choreo/durability/memory_store.h"

#include <algorithm>

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
    for (auto row = outbox_.begin(); row != outbox_.end();) {
        const bool expired = row->second.settled && row->second.settled_at_ms < request.outbox_settled_before_ms;
        if (!expired) {
            ++row;
            continue;
        }
        if (result.rows_deleted == request.rows_max) {
            result.more = true;
            return result;
        }
        row = outbox_.erase(row);  // settled rows only: an unsettled row is never purged
        result.rows_deleted++;
    }
    return result;
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
