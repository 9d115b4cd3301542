import Glibc

/// Runs `body` on a new detached thread, as Foundation's
/// `Thread.detachNewThread` did: a real pthread with the default stack,
/// not a pool thread, for work that blocks for long (a relay connection, a
/// writer feeding a child's stdin) and for check-sandbox, which tests that
/// the sandbox may create threads at all. Returns false when the thread
/// could not be created (body then never runs).
@discardableResult
public func detachThread(_ body: @escaping @Sendable () -> Void) -> Bool {
    final class Start { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    defer { pthread_attr_destroy(&attr) }
    pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
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
