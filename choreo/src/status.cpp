#include "choreo/status.h"

namespace choreo {

std::string_view status_code_name(StatusCode code) noexcept {
    switch (code) {
        case StatusCode::ok: return "ok";
        case StatusCode::transient: return "transient";
        case StatusCode::aborted: return "aborted";
        case StatusCode::failed_precondition: return "failed_precondition";
        case StatusCode::invalid_argument: return "invalid_argument";
        case StatusCode::not_found: return "not_found";
        case StatusCode::closed: return "closed";
    }
    CHOREO_UNREACHABLE();
}

Status::Status(StatusCode code, std::string reason, std::string message)
    : code_(code), reason_(std::move(reason)), message_(std::move(message)) {
    if (code_ != StatusCode::ok) CHOREO_ASSERT(!reason_.empty());
    if (code_ == StatusCode::ok) CHOREO_ASSERT(reason_.empty());
}

std::string Status::to_string() const {
    if (ok()) return "ok";
    std::string text{status_code_name(code_)};
    text += '/';
    text += reason_;
    if (!message_.empty()) {
        text += ": ";
        text += message_;
    }
    return text;
}

}  // namespace choreo
