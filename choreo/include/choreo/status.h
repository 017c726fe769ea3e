// choreo/status.h — expected failures as values: Status and Result<T>.
//
// Every fallible call in choreo returns a [[nodiscard]] Status or Result<T>. The code says how a
// caller may retry; the reason is a short stable snake_case name (it is what dead letters and
// logs carry); the message is free text for people.
//
//   Result<Envelope> decoded = decode_envelope(bytes, limits);
//   if (!decoded.ok()) return dead_letter(decoded.status().reason());
//   const Envelope& envelope = decoded.value();
//
// Exceptions never cross choreo's public boundary.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "choreo/assert.h"

namespace choreo {

// The code tells the caller what kind of retry can help (abseil's canonical codes, narrowed).
enum class StatusCode {
    ok,
    transient,            // retry the same call later (peer busy, database locked, queue full)
    aborted,              // retry the whole step from its inputs (conflict, crash mid-commit)
    failed_precondition,  // the system is not in a state to do this; needs a fix, not a retry
    invalid_argument,     // the input is wrong and will stay wrong: never retry
    not_found,            // the thing asked for does not exist
    closed,               // the object was closed or stopped; no further calls succeed
};

std::string_view status_code_name(StatusCode code) noexcept;

class [[nodiscard]] Status {
public:
    Status() = default;  // ok
    Status(StatusCode code, std::string reason, std::string message = {});

    static Status ok_status() { return Status{}; }

    bool ok() const noexcept { return code_ == StatusCode::ok; }
    StatusCode code() const noexcept { return code_; }
    // Stable snake_case name of the failure, e.g. "missing_key"; empty when ok.
    const std::string& reason() const noexcept { return reason_; }
    const std::string& message() const noexcept { return message_; }
    // "invalid_argument/missing_key: no key 'id'" — for logs and dead letters.
    std::string to_string() const;

    // Marks a status as looked at, for the rare caller that truly has nothing to do with it.
    void ignore() const noexcept {}

    friend bool operator==(const Status& a, const Status& b) {
        return a.code_ == b.code_ && a.reason_ == b.reason_;
    }

private:
    StatusCode code_ = StatusCode::ok;
    std::string reason_;
    std::string message_;
};

inline Status transient_error(std::string reason, std::string message = {}) {
    return Status{StatusCode::transient, std::move(reason), std::move(message)};
}
inline Status aborted_error(std::string reason, std::string message = {}) {
    return Status{StatusCode::aborted, std::move(reason), std::move(message)};
}
inline Status precondition_error(std::string reason, std::string message = {}) {
    return Status{StatusCode::failed_precondition, std::move(reason), std::move(message)};
}
inline Status invalid_argument_error(std::string reason, std::string message = {}) {
    return Status{StatusCode::invalid_argument, std::move(reason), std::move(message)};
}
inline Status not_found_error(std::string reason, std::string message = {}) {
    return Status{StatusCode::not_found, std::move(reason), std::move(message)};
}
inline Status closed_error(std::string reason = "closed", std::string message = {}) {
    return Status{StatusCode::closed, std::move(reason), std::move(message)};
}

// Either a value or a failed Status, never both.
template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : storage_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
    Result(Status status) : storage_(std::in_place_index<1>, std::move(status)) {  // NOLINT
        CHOREO_ASSERT(!std::get<1>(storage_).ok());
    }

    bool ok() const noexcept { return storage_.index() == 0; }

    const T& value() const& {
        CHOREO_ASSERT(ok());
        return std::get<0>(storage_);
    }
    T& value() & {
        CHOREO_ASSERT(ok());
        return std::get<0>(storage_);
    }
    T&& value() && {
        CHOREO_ASSERT(ok());
        return std::get<0>(std::move(storage_));
    }
    // The failure; an ok Status when the result holds a value.
    Status status() const {
        if (ok()) return Status{};
        return std::get<1>(storage_);
    }

    const T* operator->() const { return &value(); }
    T* operator->() { return &value(); }
    const T& operator*() const& { return value(); }
    T& operator*() & { return value(); }

private:
    std::variant<T, Status> storage_;
};

}  // namespace choreo

// Returns early from the enclosing function when `expr` (a Status) is not ok.
#define CHOREO_RETURN_IF_ERROR(expr)                 \
    do {                                             \
        ::choreo::Status choreo_status_ = (expr);    \
        if (!choreo_status_.ok()) return choreo_status_; \
    } while (false)
