#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
// In whole-module builds Clang attributes <bits/socket_type.h> (SOCK_STREAM, SOCK_SEQPACKET) to
// CBlueZ, whose shim includes <sys/socket.h> first; without this import those names vanish in release.
import CBlueZ

// POSIX plumbing shared by `SocketBearer` and `SocketBearerListener`: addresses, errors, and the
// few system calls wrapped so that every failure carries the call and errno.

/// Where a cross-process loopback link listens or connects. Only local endpoints exist by
/// construction: a Unix-domain socket path, or a TCP port on 127.0.0.1.
public enum LocalSocketAddress: Sendable, Equatable, CustomStringConvertible {
    /// A Unix-domain socket at this path (at most 107 bytes of UTF-8).
    case unix(path: String)
    /// TCP on 127.0.0.1; port 0 asks the kernel for a free port (the listener reports the real one).
    case tcpLoopback(port: UInt16)

    public var description: String {
        switch self {
        case .unix(let path): return "unix:\(path)"
        case .tcpLoopback(let port): return "tcp:127.0.0.1:\(port)"
        }
    }
}

/// A failed system call or an unusable argument, with the reason spelled out.
public enum LocalSocketError: Error, Equatable, Sendable, CustomStringConvertible {
    case system(call: String, errno: Int32, message: String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .system(let call, let e, let message): return "\(call) failed: \(message) (errno \(e))"
        case .invalidArgument(let why): return why
        }
    }

    static func last(_ call: String) -> LocalSocketError {
        let e = errno
        return .system(call: call, errno: e, message: String(cString: strerror(e)))
    }
}

enum POSIX {
    static func setNonBlocking(_ fd: Int32) throws(LocalSocketError) {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else { throw .last("fcntl(O_NONBLOCK)") }
        let fdFlags = fcntl(fd, F_GETFD)
        if fdFlags >= 0 { _ = fcntl(fd, F_SETFD, fdFlags | FD_CLOEXEC) }
    }

    /// A non-blocking pipe used to wake a thread blocked in poll(2); (read end, write end).
    static func makeWakePipe() throws(LocalSocketError) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw .last("pipe") }
        do {
            try setNonBlocking(fds[0])
            try setNonBlocking(fds[1])
        } catch {
            Glibc.close(fds[0]); Glibc.close(fds[1])
            throw error
        }
        return (fds[0], fds[1])
    }

    static func wake(_ writeFD: Int32) {
        var b: UInt8 = 1
        _ = write(writeFD, &b, 1)  // EAGAIN means a wake-up is already pending: fine
    }

    static func drainWake(_ readFD: Int32) {
        var buf = [UInt8](repeating: 0, count: 64)
        while read(readFD, &buf, buf.count) > 0 {}
    }

    static func streamType() -> Int32 { Int32(SOCK_STREAM.rawValue) }
    static func seqpacketType() -> Int32 { Int32(SOCK_SEQPACKET.rawValue) }

    /// Builds a sockaddr for `address` and calls `body` with it.
    static func withSockaddr<R>(_ address: LocalSocketAddress,
                                _ body: (UnsafePointer<sockaddr>, socklen_t) throws(LocalSocketError) -> R) throws(LocalSocketError) -> R {
        switch address {
        case .unix(let path):
            var sa = sockaddr_un()
            sa.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            let capacity = MemoryLayout.size(ofValue: sa.sun_path)
            guard !bytes.isEmpty, bytes.count < capacity, !bytes.contains(0) else {
                throw .invalidArgument("Unix socket path must be 1…\(capacity - 1) bytes without NUL: \(path)")
            }
            withUnsafeMutableBytes(of: &sa.sun_path) { raw in
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            let len = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + 1)
            var copy = sa
            return try withUnsafePointer(to: &copy) { (p) throws(LocalSocketError) -> R in
                try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { (sp) throws(LocalSocketError) -> R in try body(sp, len) }
            }
        case .tcpLoopback(let port):
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            sa.sin_addr = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
            return try withUnsafePointer(to: &sa) { (p) throws(LocalSocketError) -> R in
                try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { (sp) throws(LocalSocketError) -> R in
                    try body(sp, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    static func family(_ address: LocalSocketAddress) -> Int32 {
        switch address {
        case .unix: return AF_UNIX
        case .tcpLoopback: return AF_INET
        }
    }

    /// Disables Nagle on TCP sockets: ATT is request/response, and Nagle would add up to 40 ms.
    static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    static func boundPort(_ fd: Int32) -> UInt16? {
        var sa = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let r = withUnsafeMutablePointer(to: &sa) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return r == 0 ? UInt16(bigEndian: sa.sin_port) : nil
    }
}
