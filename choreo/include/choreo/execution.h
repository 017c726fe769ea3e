// choreo/execution.h — the durable record of one durable function execution.
//
// An execution is identified by the id of the promise it settles. Its history is a list of
// records, one per position: every step, call, sleep and send the function made, in order. On
// every resumption the function runs again from the top, and each await at position n is
// answered from record n (skip-when-done). A replay that asks for a different kind or name at a
// position than the record holds fails the execution with `nondeterminism` (design §4.4).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "choreo/address.h"
#include "choreo/bytes.h"
#include "choreo/clock.h"

namespace choreo {

enum class ExecutionState { running, completed, failed };
std::string_view execution_state_name(ExecutionState state);

struct ExecutionRow {
    std::string id;            // the promise this execution settles
    std::string function;      // the registered function's name
    Bytes args;                // msgpack
    Address reply_to;          // where the settlement is sent; empty: nobody waits by message
    std::uint32_t depth = 0;   // call depth: 0 for a root, the caller's + 1 for a call
    ExecutionState state = ExecutionState::running;
    TimeMs created_at_ms = 0;
    TimeMs finished_at_ms = 0; // 0 while running
    friend bool operator==(const ExecutionRow&, const ExecutionRow&) = default;
};

enum class HistoryKind { step, call, sleep, send };
std::string_view history_kind_name(HistoryKind kind);

enum class HistoryStatus {
    started,    // a step began (its result is not recorded) / a call, sleep or send was made
    completed,  // a step returned: payload is its result
    failed,     // a step threw: payload is the error text
};

struct HistoryRecord {
    std::string execution_id;
    std::uint32_t position = 0;
    HistoryKind kind = HistoryKind::step;
    std::string name;          // step name; "address function" for a call; kind for a send
    HistoryStatus status = HistoryStatus::started;
    Bytes payload;
    friend bool operator==(const HistoryRecord&, const HistoryRecord&) = default;
};

}  // namespace choreo
