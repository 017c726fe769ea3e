// choreo/client.h — starting durable functions from outside any function, and their results.
//
// A Client sends through a Service it is given (its transport and store): the start is committed
// to that service's outbox with the promise it will await, and the settlement comes back to the
// service, which records it. The same id twice is the same execution.
//
//   choreo::Client client{app};                 // app: a running choreo::Service
//   client.start("orders", "place-order", "order-17", order);
//   choreo::Result<Receipt> receipt = client.wait<Receipt>("order-17", 30'000);
//
// Any thread (the service's store must allow readers besides its runtime thread; the memory
// store does). The Service must outlive the Client.
#pragma once

#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include "choreo/service.h"

namespace choreo {

class Client {
public:
    explicit Client(Service& service) : service_(service) {}

    template <typename Args>
    Status start(std::string_view to, std::string_view function, std::string id, const Args& args) {
        const std::string started = id;
        CHOREO_RETURN_IF_ERROR(service_.start(to, function, std::move(id), args));
        std::lock_guard lock{mutex_};
        started_.insert(started);  // its promise exists once the service's next batch commits
        return Status{};
    }

    // The execution's promise now: pending, or settled with its value.
    Result<std::optional<PromiseRow>> poll(std::string_view id) { return service_.result(id); }

    // Waits (polling every poll_ms) until the execution settles or timeout_ms passes. Fails with
    // not_found for an id never started here, transient on timeout, aborted when the execution
    // was rejected, canceled or timed out (the reason and message say which), invalid_argument
    // when the result does not decode as T.
    template <typename T>
    Result<T> wait(std::string_view id, std::int64_t timeout_ms, std::int64_t poll_ms = 5) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        for (;;) {
            Result<std::optional<PromiseRow>> row = poll(id);
            if (!row.ok()) return row.status();
            if (!row->has_value() && !started_here(id)) return not_found_error("unknown_execution", std::string(id));
            if (row->has_value()) forget_started(id);  // its promise is in the store now
            if (row->has_value() && (*row)->state != PromiseState::pending) return value_of<T>(**row);
            if (std::chrono::steady_clock::now() >= deadline) {
                return transient_error("still_pending", "execution '" + std::string(id) + "' has not settled");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
        }
    }

private:
    template <typename T>
    static Result<T> value_of(const PromiseRow& row) {
        if (row.state != PromiseState::resolved) {
            return aborted_error(std::string(promise_state_name(row.state)), std::string(text_of(row.value)));
        }
        return unpack<T>(row.value);
    }

    void forget_started(std::string_view id) {
        std::lock_guard lock{mutex_};
        started_.erase(std::string(id));
    }
    bool started_here(std::string_view id) {
        std::lock_guard lock{mutex_};
        return started_.contains(std::string(id));
    }

    Service& service_;
    std::mutex mutex_;
    std::set<std::string> started_;  // started here, promise not yet seen in the store
};

}  // namespace choreo
