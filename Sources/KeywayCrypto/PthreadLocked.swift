#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value behind a pthread mutex, shareable by reference: the lock of every module above KeywayCrypto
/// (BLE, which does not import this module, has the same type as `Locked`).
///
/// Not `Synchronization.Mutex`: measured with Swift 6.3.1 on Linux (four threads incrementing a
/// counter under the lock, built with -sanitize=thread), a contended `Mutex` is handed over inside the
/// kernel (a PI futex) where ThreadSanitizer cannot see it and every run reports false data races;
/// NSLock and this pthread mutex report none. The mutex is heap-allocated so its address is stable and
/// never the subject of a Swift inout access (a `pthread_mutex_t` stored property passed as `&m` is
/// one, and TSAN reports concurrent lockers as an access race).
package final class PthreadLocked<Value>: @unchecked Sendable {   // `value` is only reached inside withLock, under `mutex`
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    package init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    @inline(__always)
    package func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
