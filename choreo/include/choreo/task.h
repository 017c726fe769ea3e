// choreo/task.h — Task<T>: the coroutine type of durable functions.
//
// A durable function is a C++20 coroutine returning choreo::Task<T>. It starts suspended; the
// runtime resumes it, and it runs until it completes or awaits something not yet settled
// (then it is blocked, and its frame is thrown away: the next resumption replays it from the top,
// answered from its history). A Task<T> can itself be awaited by another coroutine, so functions
// compose:
//
//   choreo::Task<int> add(choreo::DurableContext& ctx, int a, int b) { co_return a + b; }
//   choreo::Task<int> twice(choreo::DurableContext& ctx, int a) {
//       int sum = co_await add(ctx, a, a);
//       co_return sum;
//   }
//
// Single-threaded: a Task is created, resumed and destroyed on the runtime thread.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <utility>

#include "choreo/assert.h"

namespace choreo {

template <typename T>
class Task;

namespace detail {

// Resumes whoever awaited this task when it finishes; returns to the resumer when nobody did.
struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <typename Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> handle) noexcept {
        std::coroutine_handle<> continuation = handle.promise().continuation;
        return continuation ? continuation : std::noop_coroutine();
    }
    void await_resume() const noexcept {}
};

struct TaskPromiseBase {
    std::coroutine_handle<> continuation;
    std::exception_ptr exception;
    std::suspend_always initial_suspend() const noexcept { return {}; }
    FinalAwaiter final_suspend() const noexcept { return {}; }
    void unhandled_exception() noexcept { exception = std::current_exception(); }
};

template <typename T>
struct TaskPromise : TaskPromiseBase {
    std::optional<T> value;
    Task<T> get_return_object() noexcept;
    template <typename U>
    void return_value(U&& result) {
        value.emplace(std::forward<U>(result));
    }
};

template <>
struct TaskPromise<void> : TaskPromiseBase {
    Task<void> get_return_object() noexcept;
    void return_void() const noexcept {}
};

}  // namespace detail

template <typename T>
class [[nodiscard]] Task {
public:
    using promise_type = detail::TaskPromise<T>;
    using Handle = std::coroutine_handle<promise_type>;

    explicit Task(Handle handle) : handle_(handle) {}
    Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    Task& operator=(Task&& other) noexcept {
        if (this != &other) {
            destroy();
            handle_ = std::exchange(other.handle_, {});
        }
        return *this;
    }
    Task(const Task&) = delete;
    Task& operator=(const Task&) = delete;
    ~Task() { destroy(); }

    // Awaiting a Task runs it; the awaiter continues when it completes (symmetric transfer).
    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiter) noexcept {
        CHOREO_ASSERT(handle_ && !handle_.done());
        handle_.promise().continuation = awaiter;
        return handle_;
    }
    T await_resume() { return take_result(); }

    // For the runtime, which drives a root task by hand.
    bool done() const { return handle_.done(); }
    void resume() {
        CHOREO_ASSERT(handle_ && !handle_.done());
        handle_.resume();
    }
    bool failed() const { return done() && handle_.promise().exception != nullptr; }
    std::exception_ptr exception() const { return handle_.promise().exception; }
    T take_result() {
        CHOREO_ASSERT(handle_ && handle_.done());
        if (handle_.promise().exception) std::rethrow_exception(handle_.promise().exception);
        if constexpr (!std::is_void_v<T>) {
            CHOREO_ASSERT(handle_.promise().value.has_value());
            return std::move(*handle_.promise().value);
        }
    }

private:
    void destroy() {
        if (handle_) handle_.destroy();
        handle_ = {};
    }
    Handle handle_;
};

namespace detail {
template <typename T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
    return Task<T>{std::coroutine_handle<TaskPromise<T>>::from_promise(*this)};
}
inline Task<void> TaskPromise<void>::get_return_object() noexcept {
    return Task<void>{std::coroutine_handle<TaskPromise<void>>::from_promise(*this)};
}
}  // namespace detail

}  // namespace choreo
