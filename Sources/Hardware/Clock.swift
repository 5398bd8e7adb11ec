import Foundation
import KeywayCrypto

/// The source of time for every device of the model.
///
/// Nothing in `Hardware` reads the system time directly: locks, controllers and IQs ask their injected
/// clock for `now()` and register timers with it. A `RealClock` follows the wall clock; a
/// `SimulatedClock` only moves when a test (or the QA engineer) sets or advances it, which makes every
/// relock, schedule, alarm and sync deterministic.
public protocol KeywayClock: AnyObject, Sendable {
    /// The current instant on this clock.
    func now() -> Date

    /// Runs `action` once, when the clock reaches `deadline` (immediately-due deadlines fire at the next
    /// opportunity, never synchronously inside this call). The returned handle cancels it.
    @discardableResult
    func schedule(at deadline: Date, _ action: @escaping @Sendable () async -> Void) -> ClockTimer

    /// Suspends the calling task until the clock reaches `deadline`. Throws `CancellationError` if the
    /// task is cancelled first.
    func sleep(until deadline: Date) async throws
}

extension KeywayClock {
    /// Runs `action` once, `delay` seconds from now on this clock.
    @discardableResult
    public func schedule(after delay: TimeInterval, _ action: @escaping @Sendable () async -> Void) -> ClockTimer {
        schedule(at: now().addingTimeInterval(delay), action)
    }

    /// Suspends the calling task for `delay` seconds of this clock's time.
    public func sleep(for delay: TimeInterval) async throws {
        try await sleep(until: now().addingTimeInterval(delay))
    }
}

/// A pending timer registered with a `KeywayClock`. Cancelling is idempotent and safe from any thread;
/// a cancelled timer's action never runs.
public final class ClockTimer: Sendable {
    private struct State {
        var cancelled = false
        var onCancel: (@Sendable () -> Void)?
        var task: Task<Void, Never>?
    }
    // The flag is read by the clock right before it would run the action.
    private let state = PthreadLocked(State())

    init() {}

    /// The task behind a `RealClock` timer; it ends once the timer has fired or been cancelled (nil for a
    /// `SimulatedClock` timer). Tests await it to know a cancelled timer settled, instead of sleeping past
    /// its deadline.
    var task: Task<Void, Never>? {
        get { state.withLock { $0.task } }
        set { state.withLock { $0.task = newValue } }
    }

    public var isCancelled: Bool { state.withLock { $0.cancelled } }

    public func cancel() {
        let hook: (@Sendable () -> Void)? = state.withLock { s in
            if s.cancelled { return nil }
            s.cancelled = true
            defer { s.onCancel = nil }
            return s.onCancel
        }
        hook?()
    }

    /// Marks a timer whose action is about to run: from then on it counts as done, and a later
    /// `cancel()` neither runs the hook nor counts as a tombstone in the clock's queue.
    func setFiredSilently() {
        state.withLock { $0.cancelled = true; $0.onCancel = nil }
    }

    func setOnCancel(_ hook: @escaping @Sendable () -> Void) {
        let cancelled = state.withLock { s in
            if !s.cancelled { s.onCancel = hook }
            return s.cancelled
        }
        if cancelled { hook() }
    }
}

// MARK: - Real clock

/// The wall clock. Timers are tasks sleeping on the system's continuous clock.
public final class RealClock: KeywayClock {
    public init() {}

    public func now() -> Date { Date() }

    @discardableResult
    public func schedule(at deadline: Date, _ action: @escaping @Sendable () async -> Void) -> ClockTimer {
        let timer = ClockTimer()
        let task = Task {
            do { try await RealClock.sleepUntil(deadline) } catch { return }
            if timer.isCancelled || Task.isCancelled { return }
            await action()
        }
        timer.task = task
        timer.setOnCancel { task.cancel() }
        return timer
    }

    public func sleep(until deadline: Date) async throws {
        try await RealClock.sleepUntil(deadline)
        try Task.checkCancellation()
    }

    /// Sleeps in bounded steps until the wall clock reaches `deadline`, so far deadlines neither
    /// overflow the nanosecond count nor fire early, and a wall-clock jump is noticed within a day.
    private static func sleepUntil(_ deadline: Date) async throws {
        while true {
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0, remaining.isFinite else { return }
            try await Task.sleep(nanoseconds: UInt64(min(remaining, 86_400) * 1e9))
        }
    }
}

// MARK: - Simulated clock

/// A clock that stands still until it is told to move.
///
/// `advance(by:)` and `set(to:)` fire every timer that falls due, one at a time, in deadline order (ties
/// in the order they were scheduled), setting `now()` to each timer's deadline before running it and
/// awaiting its action before the next. Timers scheduled by an action fire in the same advance if they
/// fall due within it. Nothing sleeps for real, so a test that advances a day runs in microseconds.
public final class SimulatedClock: KeywayClock, Sendable {
    private struct Entry {
        let deadline: Date
        let order: UInt64
        let timer: ClockTimer
        let action: @Sendable () async -> Void
        func precedes(_ other: Entry) -> Bool {
            deadline != other.deadline ? deadline < other.deadline : order < other.order
        }
    }

    /// Actions run with the lock released.
    private struct State {
        var current: Date
        var heap: [Entry] = []
        var nextOrder: UInt64 = 0
        var cancelledInHeap = 0

        /// Pops the next live timer due by `target`, moving `current` to its deadline; or, when none is
        /// left, moves `current` to `target` and returns nil.
        mutating func popDue(upTo target: Date) -> Entry? {
            while let top = heap.first, top.deadline <= target {
                popTop()
                if top.timer.isCancelled {
                    cancelledInHeap = max(0, cancelledInHeap - 1)
                    continue
                }
                if top.deadline > current { current = top.deadline }
                return top
            }
            if current < target { current = target }
            return nil
        }

        // Cancelled entries are dropped lazily; when they dominate the heap it is rebuilt so that memory
        // stays proportional to live timers even when relock timers are cancelled over and over.
        mutating func compactIfNeeded() {
            guard cancelledInHeap > 64, cancelledInHeap * 2 > heap.count else { return }
            let live = heap.filter { !$0.timer.isCancelled }
            heap.removeAll(keepingCapacity: true)
            cancelledInHeap = 0
            for entry in live { push(entry) }
        }

        // Binary min-heap on (deadline, order).
        mutating func push(_ entry: Entry) {
            heap.append(entry)
            var child = heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                if heap[child].precedes(heap[parent]) {
                    heap.swapAt(child, parent)
                    child = parent
                } else { break }
            }
        }

        mutating func popTop() {
            let last = heap.count - 1
            heap.swapAt(0, last)
            heap.removeLast()
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var best = parent
                if left < heap.count, heap[left].precedes(heap[best]) { best = left }
                if right < heap.count, heap[right].precedes(heap[best]) { best = right }
                if best == parent { break }
                heap.swapAt(parent, best)
                parent = best
            }
        }
    }
    private let state: PthreadLocked<State>

    /// Starts the clock at `start` (default: 2025-01-06 09:00 UTC, a Monday, so tests read naturally).
    public init(start: Date = Date(timeIntervalSince1970: 1_736_154_000)) {
        state = PthreadLocked(State(current: start))
    }

    public func now() -> Date { state.withLock { $0.current } }

    /// Number of timers still waiting (cancelled ones excluded).
    public var pendingTimers: Int {
        state.withLock { s in s.heap.lazy.filter { !$0.timer.isCancelled }.count }
    }

    /// The deadline of the earliest pending timer, if any.
    public var nextDeadline: Date? {
        state.withLock { s in
            s.compactIfNeeded()
            return s.heap.lazy.filter { !$0.timer.isCancelled }.map(\.deadline).min()
        }
    }

    @discardableResult
    public func schedule(at deadline: Date, _ action: @escaping @Sendable () async -> Void) -> ClockTimer {
        let timer = ClockTimer()
        state.withLock { s in
            s.push(Entry(deadline: deadline, order: s.nextOrder, timer: timer, action: action))
            s.nextOrder &+= 1
        }
        timer.setOnCancel { [weak self] in self?.noteCancelled() }
        return timer
    }

    public func sleep(until deadline: Date) async throws {
        try Task.checkCancellation()
        if now() >= deadline { return }
        // A continuation resumed by a timer of this clock; cancellation resumes it early with an error.
        let box = ContinuationBox()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                box.install(continuation)
                let timer = schedule(at: deadline) { box.resume(with: .success(())) }
                box.timer = timer
            }
        } onCancel: {
            box.resume(with: .failure(CancellationError()))
        }
    }

    /// Moves the clock forward by `seconds` (must be ≥ 0), firing every timer due on the way.
    public func advance(by seconds: TimeInterval) async {
        guard seconds > 0, seconds.isFinite else { await runDue(upTo: now()); return }
        await runDue(upTo: now().addingTimeInterval(seconds))
    }

    /// Sets the clock. Moving forward fires the timers due on the way, as `advance` does; moving backward
    /// (a clock jump a QA engineer may want) fires nothing and leaves timers at their absolute deadlines.
    public func set(to date: Date) async {
        if date >= now() {
            await runDue(upTo: date)
        } else {
            state.withLock { $0.current = date }
        }
    }

    /// Fires every timer already due at the current instant (useful after scheduling zero-delay work).
    public func runUntilIdle() async {
        await runDue(upTo: now())
    }

    private func runDue(upTo target: Date) async {
        while let entry = state.withLock({ $0.popDue(upTo: target) }) {
            // Marking it fired means a later cancel() of this handle is a harmless no-op.
            entry.timer.setFiredSilently()
            await entry.action()
        }
    }

    private func noteCancelled() {
        state.withLock { s in
            s.cancelledInHeap += 1
            s.compactIfNeeded()
        }
    }
}

/// Bridges a checked continuation that may be resumed by either a timer or a cancellation handler,
/// whichever comes first.
private final class ContinuationBox: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Void, Error>?
        var pending: Result<Void, Error>?
        var timer: ClockTimer?
    }
    private let state = PthreadLocked(State())

    var timer: ClockTimer? {
        get { state.withLock { $0.timer } }
        set { state.withLock { $0.timer = newValue } }
    }

    func install(_ c: CheckedContinuation<Void, Error>) {
        let early: Result<Void, Error>? = state.withLock { s in
            if let result = s.pending {
                s.pending = nil
                return result
            }
            s.continuation = c
            return nil
        }
        if let early { c.resume(with: early) }
    }

    func resume(with result: Result<Void, Error>) {
        let taken: (CheckedContinuation<Void, Error>, ClockTimer?)? = state.withLock { s in
            guard let c = s.continuation else {
                if s.pending == nil { s.pending = result }
                return nil
            }
            s.continuation = nil
            return (c, s.timer)
        }
        guard let (c, t) = taken else { return }
        if case .failure = result { t?.cancel() }
        c.resume(with: result)
    }
}
