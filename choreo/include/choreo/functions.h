// choreo/functions.h — durable functions as users write them (design §6).
//
//   svc.function("place-order", [](choreo::DurableContext& ctx, Order order) -> choreo::Task<Receipt> {
//       auto reserved = co_await ctx.call<Reservation>("inventory", "reserve", order);  // blocks
//       auto charge = co_await ctx.step<Charge>("charge", [&] { return gateway.charge(order); });
//       co_await ctx.sleep_ms(5 * 60 * 1000);                                           // durable
//       co_return Receipt{order.id, reserved.id, charge.id};
//   });
//
// The one rule: between awaits a function is deterministic. It runs again from the top after
// every interruption (a crash, a sleep, a reply), and each await is answered from its history,
// so the same inputs must ask for the same steps, calls, sleeps and sends in the same order.
// Anything that differs run to run (time, randomness, I/O) goes inside ctx.step.
//
// GCC 12 (Debian 12's compiler) destroys a lambda with captures twice when the lambda is made
// inside a co_await expression (a known compiler bug, fixed in later GCC): name it first.
//   auto charge = [order] { return gateway.charge(order); };     // not inside the co_await
//   auto receipt = co_await ctx.step<Charge>("charge", charge);
//
// Failures reach the function as choreo::DurableError (a rejected or timed-out call, a failed
// step); uncaught, they reject the execution's promise. Runtime thread only.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "choreo/context.h"
#include "choreo/durable.h"
#include "choreo/task.h"

namespace choreo {

// A call or timer started with ctx.call_async / ctx.sleep_async: awaiting it blocks until its
// promise settles. Valid within the function run that made it.
template <typename T>
class Future {
public:
    Future(ExecutionRun& run, std::string promise_id) : run_(&run), promise_id_(std::move(promise_id)) {}
    const std::string& promise_id() const { return promise_id_; }

    bool await_ready() {
        settled_ = run_->settled(promise_id_);
        if (!settled_) run_->block();
        return settled_.has_value();
    }
    // Blocked: the frame may be kept (the frame cache) and resumed here once this is ready.
    bool await_suspend(std::coroutine_handle<> handle) {
        run_->park(handle, [this] {
            settled_ = run_->settled(promise_id_);
            return settled_.has_value();
        });
        return true;
    }
    T await_resume() { return value_of(*settled_); }

    // The value of a settled promise, or DurableError when it did not resolve.
    static T value_of(const PromiseRow& row) {
        ExecutionRun::throw_unless_resolved(row);
        if constexpr (!std::is_void_v<T>) {
            Result<T> value = unpack<T>(row.value);
            if (!value.ok()) throw DurableError(std::string(durable_error::invalid_result), value.status().message());
            return std::move(value).value();
        }
    }

private:
    friend class DurableContext;
    ExecutionRun* run_;
    std::string promise_id_;
    std::optional<PromiseRow> settled_;
};

template <typename T>
class StepAwaiter {
public:
    explicit StepAwaiter(std::optional<Bytes> recorded) : recorded_(std::move(recorded)) {}
    bool await_ready() const noexcept { return recorded_.has_value(); }
    bool await_suspend(std::coroutine_handle<>) const noexcept { return true; }  // runs after the commit
    T await_resume() {
        if constexpr (!std::is_void_v<T>) {
            Result<T> value = unpack<T>(*recorded_);
            if (!value.ok()) throw DurableError(std::string(durable_error::invalid_result), value.status().message());
            return std::move(value).value();
        }
    }

private:
    std::optional<Bytes> recorded_;
};

// What all() and any() hand back for a Future<T>: T, or std::monostate for Future<void>.
template <typename T>
using FutureValue = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <typename T>
FutureValue<T> future_value(const PromiseRow& row) {
    if constexpr (std::is_void_v<T>) {
        Future<void>::value_of(row);
        return std::monostate{};
    } else {
        return Future<T>::value_of(row);
    }
}

// Waits for every future; the results in order. Blocks until all have settled.
template <typename T>
class AllAwaiter {
public:
    AllAwaiter(ExecutionRun& run, std::vector<Future<T>> futures) : run_(run), futures_(std::move(futures)) {}
    bool await_ready() {
        if (all_settled()) return true;
        run_.block();
        return false;
    }
    bool all_settled() {
        rows_.clear();
        for (Future<T>& future : futures_) {
            std::optional<PromiseRow> row = run_.settled(future.promise_id());
            if (!row) return false;
            rows_.push_back(std::move(*row));
        }
        return true;
    }
    bool await_suspend(std::coroutine_handle<> handle) {
        run_.park(handle, [this] { return all_settled(); });
        return true;
    }
    std::vector<FutureValue<T>> await_resume() {
        std::vector<FutureValue<T>> values;
        values.reserve(rows_.size());
        for (const PromiseRow& row : rows_) values.push_back(future_value<T>(row));
        return values;
    }

private:
    ExecutionRun& run_;
    std::vector<Future<T>> futures_;
    std::vector<PromiseRow> rows_;
};

// Waits for the first future to settle (the earliest settled, ties by position): its index and
// value. Blocks until one has.
template <typename T>
class AnyAwaiter {
public:
    AnyAwaiter(ExecutionRun& run, std::vector<Future<T>> futures) : run_(run), futures_(std::move(futures)) {}
    bool await_ready() {
        if (first_settled()) return true;
        run_.block();
        return false;
    }
    bool first_settled() {
        first_.reset();
        for (std::size_t index = 0; index < futures_.size(); index++) {
            std::optional<PromiseRow> row = run_.settled(futures_[index].promise_id());
            if (row && (!first_ || row->settled_at_ms < first_->settled_at_ms)) {
                first_ = std::move(row);
                index_ = index;
            }
        }
        return first_.has_value();
    }
    bool await_suspend(std::coroutine_handle<> handle) {
        run_.park(handle, [this] { return first_settled(); });
        return true;
    }
    std::pair<std::size_t, FutureValue<T>> await_resume() { return {index_, future_value<T>(*first_)}; }

private:
    ExecutionRun& run_;
    std::vector<Future<T>> futures_;
    std::optional<PromiseRow> first_;
    std::size_t index_ = 0;
};

class DurableContext {
public:
    explicit DurableContext(ExecutionRun& run) : run_(run) {}

    // The id of this execution (the promise it settles).
    const std::string& execution_id() const { return run_.execution().id; }
    // The key of the next step: "<execution>/<position>", the same every time that step runs
    // again, so an external system (a payment provider) can dedupe it. A step's callable that
    // takes a `const std::string&` is handed it.
    std::string step_key() const { return execution_id() + "/" + std::to_string(run_.next_position()); }

    // Skip-when-done: runs `callable` once (on a step worker, off the runtime thread) and records
    // its result; replays return the recorded result. The callable returns T (msgpack-able) or
    // void, and takes nothing or the step key. A step that started and recorded no result (a
    // crash) runs again, unless options.at_most_once.
    template <typename T, typename Callable>
    StepAwaiter<T> step(std::string_view name, Callable callable, StepOptions options = {}) {
        StepCallable run_it = [callable = std::move(callable), key = step_key()]() mutable -> StepOutcome {
            auto invoke = [&] {
                if constexpr (std::is_invocable_v<Callable&, const std::string&>) {
                    return callable(key);
                } else {
                    return callable();
                }
            };
            try {
                if constexpr (std::is_void_v<T>) {
                    invoke();
                    return {true, pack(true), {}};
                } else {
                    return {true, pack(invoke()), {}};
                }
            } catch (const std::exception& error) {
                return {false, {}, error.what()};
            } catch (...) {
                return {false, {}, "a non-standard exception"};
            }
        };
        std::optional<Bytes> recorded = run_.step(name, options, std::move(run_it));
        if constexpr (std::is_void_v<T>) {
            if (recorded) recorded = Bytes{};
        }
        return StepAwaiter<T>{std::move(recorded)};
    }

    // A durable call: the callee's execution id is this call's child promise id, so a
    // duplicated request never starts a second execution.
    template <typename T, typename Args>
    Future<T> call_async(std::string_view to, std::string_view function, const Args& args, CallOptions options = {}) {
        return Future<T>{run_, run_.call(parse(to), function, pack(args), options)};
    }
    template <typename T, typename Args>
    Future<T> call(std::string_view to, std::string_view function, const Args& args, CallOptions options = {}) {
        return call_async<T>(to, function, args, options);
    }

    Future<void> sleep_ms(TimeMs duration_ms) { return sleep_until_ms(run_.now_ms() + duration_ms); }
    // Due at an absolute time; the due time is fixed when the sleep is first recorded.
    Future<void> sleep_until_ms(TimeMs due_ms) { return Future<void>{run_, run_.sleep_until(due_ms)}; }

    template <typename Body>
    void send(std::string_view to, std::string_view kind, const Body& body) {
        run_.send(parse(to), kind, pack(body));
    }

    template <typename T>
    AllAwaiter<T> all(std::vector<Future<T>> futures) {
        return AllAwaiter<T>{run_, std::move(futures)};
    }
    template <typename T>
    AnyAwaiter<T> any(std::vector<Future<T>> futures) {
        CHOREO_ASSERT(!futures.empty());
        return AnyAwaiter<T>{run_, std::move(futures)};
    }

    ExecutionRun& run() { return run_; }

private:
    static Address parse(std::string_view text) {
        Result<Address> address = Address::parse(text);
        if (!address.ok()) throw DurableError(std::string(durable_error::invalid_address), address.status().message());
        return std::move(address).value();
    }
    ExecutionRun& run_;
};

namespace detail {
template <typename F>
struct FunctionSignature : FunctionSignature<decltype(&F::operator())> {};
template <typename C, typename R, typename A>
struct FunctionSignature<R (C::*)(DurableContext&, A) const> {
    using Args = std::decay_t<A>;
    using Returned = R;
};
template <typename C, typename R, typename A>
struct FunctionSignature<R (C::*)(DurableContext&, A)> : FunctionSignature<R (C::*)(DurableContext&, A) const> {};
template <typename R, typename A>
struct FunctionSignature<R (*)(DurableContext&, A)> {  // a free function
    using Args = std::decay_t<A>;
    using Returned = R;
};
template <typename T>
struct TaskValue;
template <typename T>
struct TaskValue<Task<T>> {
    using type = T;
};
}  // namespace detail

// Wraps `fn(DurableContext&, Args) -> Task<R>` for the kernel.
template <typename F>
DurableFunction make_durable_function(F fn) {
    using Signature = detail::FunctionSignature<std::decay_t<F>>;
    using Args = typename Signature::Args;
    using R = typename detail::TaskValue<typename Signature::Returned>::type;
    return [fn = std::move(fn)](ExecutionRun& run, Bytes args) -> Task<Bytes> {
        DurableContext context{run};
        Result<Args> decoded = unpack<Args>(args);
        if (!decoded.ok()) throw DurableError(std::string(durable_error::invalid_arguments), decoded.status().message());
        if constexpr (std::is_void_v<R>) {
            co_await fn(context, std::move(decoded).value());
            co_return Bytes{};
        } else {
            R result = co_await fn(context, std::move(decoded).value());
            co_return pack(result);
        }
    };
}

}  // namespace choreo
