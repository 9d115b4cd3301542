import CSandbox
import Glibc

/// Runs `body` on a new detached thread, as Foundation's
/// `Thread.detachNewThread` did: a real pthread with the default stack,
/// not a pool thread, for work that blocks for long (a relay connection, a
/// writer feeding a child's stdin) and for check-sandbox, which tests that
/// the sandbox may create threads at all. Returns false when the thread
/// could not be created (body then never runs).
/// `elsewhere`: on a CPU other than the caller's, for start-up work that
/// must run beside the caller at once, not after its time slice.
@discardableResult
public func detachThread(elsewhere: Bool = false, _ body: @escaping @Sendable () -> Void) -> Bool {
    final class Start { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    defer { pthread_attr_destroy(&attr) }
    pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
    if elsewhere { _ = cs_thread_attr_away_from_here(&attr) }
    let start = Unmanaged.passRetained(Start(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, &attr, { arg in
        Unmanaged<Start>.fromOpaque(arg!).takeRetainedValue().body()
        return nil
    }, start)
    if rc != 0 { Unmanaged<Start>.fromOpaque(start).release() }
    return rc == 0
}

/// A mutex with one condition variable (what NSCondition was): for a queue
/// whose consumers wait until work arrives or everyone is idle. The pthread
/// objects live on the heap because they must not move.
public final class Condition: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }
    /// Unlocks, waits for a broadcast (or a spurious wake-up: re-check the predicate), locks again.
    public func wait() { pthread_cond_wait(cond, mutex) }
    public func broadcast() { pthread_cond_broadcast(cond) }
}

/// A value made once per process, either ahead of time on a background
/// thread (`claim()` then `make()`) or by the first caller of `get()`, who
/// otherwise waits for a making already under way. For start-up work that
/// does not depend on what the main thread is busy with (reading the config).
public final class Prepared<Value>: @unchecked Sendable {
    private enum State { case idle, making, made(Value) }
    private let condition = Condition()
    private let body: @Sendable () -> Value
    private var state = State.idle   // guarded by condition

    public init(_ body: @escaping @Sendable () -> Value) { self.body = body }

    /// True when the caller is now the one to call `make()`.
    public func claim() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard case .idle = state else { return false }
        state = .making
        return true
    }

    /// Makes the value; only after a `claim()` that returned true.
    public func make() { publish(body()) }

    /// Sets the value instead of making it; only after a `claim()` that
    /// returned true (for a claimer that finds it cannot make it after all).
    public func publish(_ value: Value) {
        condition.lock()
        state = .made(value)
        condition.broadcast()
        condition.unlock()
    }

    public func get() -> Value {
        if claim() { make() }
        condition.lock()
        defer { condition.unlock() }
        while true {
            if case .made(let value) = state { return value }
            condition.wait()
        }
    }

    /// The value if it has been made (or is being made: then waits for it),
    /// leaving `replacement` in its place; nil, making nothing, if no one has
    /// started it. For a value that must be used once, such as an fd.
    public func take(replacingWith replacement: Value) -> Value? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            switch state {
            case .idle: return nil
            case .making: condition.wait()
            case .made(let value):
                state = .made(replacement)
                return value
            }
        }
    }
}
