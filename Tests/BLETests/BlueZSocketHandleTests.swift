import Foundation
import XCTest
@testable import BLE
#if canImport(Glibc)
import Glibc
#endif

/// The dispatch sources behind `BlueZSocketHandle`, on a socket pair (no Bluetooth needed).
final class BlueZSocketHandleTests: XCTestCase {
    /// A wait whose task was cancelled before it reached the handle, arriving after `close()` ran to its
    /// end. This is the order `BlueZAdvertiser.close()` can produce: its reader task has left the actor
    /// for `waitReadable()` and not yet reached the handle's queue when `close()` cancels it and closes
    /// the handle; the wait's cancellation handler then reaches the queue after the close. Before
    /// 89d3dee that handler suspended the closed, cancelled read source, and libdispatch traps
    /// (SIGILL, "Release of a suspended object") when the handle and its suspended source are released:
    /// the crash of a full `make tsan` run in BlueZAdvertiserTests. Here the order is forced, so a
    /// regression traps every run.
    func testAWaitCancelledAfterCloseLeavesNoSourceSuspended() async throws {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &fds), 0)
        defer { close(fds[1]) }
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        var handle: BlueZSocketHandle? = BlueZSocketHandle(fd: fds[0], label: "test.late-cancel")
        handle?.close()
        // close() has run to its end (both sources cancelled, their cancel handlers done) once the
        // descriptor is closed, which the peer sees as end of file.
        var byte: UInt8 = 0
        XCTAssertEqual(read(fds[1], &byte, 1), 0)

        let late = Task { [handle] in
            withUnsafeCurrentTask { $0?.cancel() }   // cancelled before it waits: onCancel runs first
            try await handle?.waitReadable()
        }
        handle = nil
        let outcome = await late.result
        XCTAssertThrowsError(try outcome.get(), "a wait on a closed handle ends with an error")
        // The task, and with it the last reference, is gone: the handle and its sources are released
        // here or on its queue right after; with a suspended source that release traps the process.
    }

    /// A wait that is cancelled while it waits ends with CancellationError, and the handle still
    /// closes cleanly afterwards.
    func testCancellingAWaitThenClosing() async throws {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &fds), 0)
        defer { close(fds[1]) }
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        let handle = BlueZSocketHandle(fd: fds[0], label: "test.cancel-then-close")
        let waiter = Task { try await handle.waitReadable() }
        waiter.cancel()
        let outcome = await waiter.result
        XCTAssertThrowsError(try outcome.get())
        handle.close()
        var byte: UInt8 = 0
        XCTAssertEqual(read(fds[1], &byte, 1), 0, "the descriptor is closed once both sources are cancelled")
    }
}
