#include "choreo/execution.h"

#include "choreo/assert.h"

namespace choreo {

std::string_view execution_state_name(ExecutionState state) {
    switch (state) {
        case ExecutionState::running: return "running";
        case ExecutionState::completed: return "completed";
        case ExecutionState::failed: return "failed";
    }
    CHOREO_UNREACHABLE();
}

std::string_view history_kind_name(HistoryKind kind) {
    switch (kind) {
        case HistoryKind::step: return "step";
        case HistoryKind::call: return "call";
        case HistoryKind::sleep: return "sleep";
        case HistoryKind::send: return "send";
    }
    CHOREO_UNREACHABLE();
}

}  // namespace choreo
