// choreo/durability/memory_store.h — the Store interface in memory, for tests and examples.
//
// What is committed lives as long as the MemoryStore object, so a test can "restart" a service
// by building a new Service on the same store. Crashes are injected: the next commit can crash
// before it applies (nothing written) or after (all written, but the caller is told it failed),
// after which every call fails with `closed` until recover(), like a process that died and
// came back with only its committed data.
//
//   choreo::MemoryStore store;
//   store.inject_crash(choreo::MemoryStore::CrashPoint::after_commit);
//   ... the service's next commit crashes; its run() returns the error ...
//   store.recover();                 // committed data is all there is
//   choreo::Service again{options, transport, store};
//
// Thread-safe: tests may read while a service runs.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <set>

#include "choreo/store.h"

namespace choreo {

class MemoryStore final : public Store {
public:
    enum class CrashPoint { none, before_commit, after_commit };

    MemoryStore() = default;

    Features features() const override { return {.persistent = false, .shared = true}; }
    Status find_dedup(std::span<const MessageId> ids, std::vector<bool>& found) override;
    Result<TimeMs> dedup_horizon() override;
    Result<std::optional<Bytes>> load_state(std::string_view key) override;
    Status commit(const CommitBatch& batch) override;
    Result<std::optional<OutboxRow>> find_outbox(const MessageId& id) override;
    Result<std::vector<OutboxRow>> unsettled_outbox(const MessageId& after, std::size_t limit) override;
    Result<std::optional<std::int64_t>> consumed_position(std::string_view stream) override;
    Result<std::optional<DeadLetter>> find_dead_letter(std::string_view key) override;
    Result<std::vector<DeadLetter>> dead_letters(std::string_view after_key, std::size_t limit) override;
    Status delete_dead_letter(std::string_view key) override;
    Result<PurgeResult> purge(const PurgeRequest& request) override;
    Result<std::optional<PromiseRow>> find_promise(std::string_view id) override;
    Result<std::vector<PromiseRow>> pending_promises_with_deadline(std::string_view after_id,
                                                                   std::size_t limit) override;
    Result<std::optional<ExecutionRow>> find_execution(std::string_view id) override;
    Result<std::vector<ExecutionRow>> running_executions(std::string_view after_id,
                                                         std::size_t limit) override;
    Result<std::vector<HistoryRecord>> load_history(std::string_view execution_id,
                                                    std::size_t limit) override;

    // Fault injection.
    void inject_crash(CrashPoint point);
    // Fails the next `count` commits with this status, applying nothing (e.g. transient "busy").
    void fail_commits(std::size_t count, Status failure);
    // Comes back after a crash with what was committed.
    void recover();
    // Test hook: called with every batch as it is applied, inside the commit (so also for a
    // commit that then "crashes after"): the store's own record of what was committed.
    void set_commit_listener(std::function<void(const CommitBatch&)> listener);
    bool crashed() const;

    std::size_t dedup_size() const;
    std::size_t outbox_size() const;

private:
    Status check_open() const;
    void apply(const CommitBatch& batch);
    void apply_promises(const CommitBatch& batch);
    void apply_executions(const CommitBatch& batch);
    bool purge_outbox(const PurgeRequest& request, PurgeResult& result);
    bool purge_promises(const PurgeRequest& request, PurgeResult& result);
    bool owned_by_running_execution(std::string_view promise_id) const;
    bool purge_executions(const PurgeRequest& request, PurgeResult& result);
    bool purge_history(const std::string& execution_id, const PurgeRequest& request, PurgeResult& result);

    mutable std::mutex mutex_;
    bool crashed_ = false;
    CrashPoint crash_point_ = CrashPoint::none;
    std::size_t failures_left_ = 0;
    Status failure_;
    std::function<void(const CommitBatch&)> commit_listener_;

    std::map<MessageId, TimeMs> dedup_;                 // id -> sent_at
    std::set<std::pair<TimeMs, MessageId>> dedup_by_sent_at_;
    TimeMs horizon_ms_ = 0;
    std::map<std::string, Bytes, std::less<>> state_;
    std::map<MessageId, OutboxRow> outbox_;
    std::map<std::string, std::int64_t, std::less<>> positions_;
    std::map<std::string, DeadLetter, std::less<>> dead_letters_;
    std::map<std::string, PromiseRow, std::less<>> promises_;
    std::map<std::string, ExecutionRow, std::less<>> executions_;
    // execution id -> position -> record; an execution without records has no entry (never an
    // empty inner map), so "has history" is one lookup.
    std::map<std::string, std::map<std::uint32_t, HistoryRecord>, std::less<>> history_;
};

}  // namespace choreo
