import BLE
import Foundation
import MobileKey

/// Why a phone's tap did not get as far as an authenticated result. The lock's *decision* is not an
/// error: a denial comes back as a `TapResultMessage` with `granted == false` and its reason.
public enum PhoneTapError: Error, CustomStringConvertible {
    /// The peer has no Keyway lock service (wrong device, or not a Keyway lock).
    case lockServiceNotFound
    /// The lock service lacks a characteristic the protocol needs.
    case lockServiceIncomplete(String)
    /// Writing the phone hello or reading the reader hello failed; the lock answers its refusals
    /// (out of reach, unpowered, not provisioned, protocol version) with ATT application errors,
    /// decoded in the description.
    case helloRefused(GATTClientError)
    /// The phone checked the reader's hello and refused to reveal its credential to it (a
    /// `TapPhoneError`, or the phone's own crypto failing).
    case phoneRefusedLock(Error)
    /// No result notification before the connection closed or the timeout passed.
    case noResult(String)
    /// A result arrived but its MAC did not check out (or it did not decode): the phone cannot trust
    /// it. `claimed` is what it said, if it decoded at all.
    case resultNotAuthenticated(claimed: TapResultMessage?, why: String)

    public var description: String {
        switch self {
        case .lockServiceNotFound:
            return "the peer has no Keyway lock service (\(KeywayLockService.service)) — is it a Keyway lock?"
        case .lockServiceIncomplete(let what):
            return "the Keyway lock service on the peer lacks the \(what) characteristic"
        case .helloRefused(let e):
            if case .attError(.application(let code), _, _) = e {
                switch code {
                case LockGATT.ApplicationError.outOfReach: return "the lock refused the tap: the phone is out of its reach"
                case LockGATT.ApplicationError.unpowered: return "the lock refused the tap: it has no power"
                case LockGATT.ApplicationError.notProvisioned: return "the lock refused the tap: it has no site keys"
                case LockGATT.ApplicationError.protocolVersionUnsupported:
                    return "the lock refused the tap: it speaks Keyway tap protocol version \(TapProtocol.version) only (the phone hello comes first)"
                case LockGATT.ApplicationError.malformedPhoneHello: return "the lock refused the tap: the phone hello is malformed"
                default: break
                }
            }
            return "the hello exchange failed: \(e)"
        case .phoneRefusedLock(let e):
            return "the phone refused the lock: \(e)"
        case .noResult(let why):
            return "no tap result from the lock: \(why)"
        case .resultNotAuthenticated(let claimed, let why):
            let said = claimed.map { $0.granted ? " (it claimed granted)" : " (it claimed denied: \($0.reason ?? "no reason"))" } ?? ""
            return "the lock's result is not authenticated: \(why)\(said)"
        }
    }
}

/// The phone's side of one tap over any GATT client — the built-in loopback phone and
/// `keyway phone tap` over BlueZ run the same steps: MTU exchange, discovery of the Keyway lock
/// service, subscription to results, hello read, presentation in fragments (long writes when a
/// fragment exceeds the ATT_MTU), and the result notification, authenticated with the tap's keys.
public enum PhoneTap {
    /// The phone-side timings of one tap, for hardware engineers and the HIL report.
    public struct Timing: Sendable {
        /// MTU exchange, discovery and subscription.
        public var setup: Duration = .zero
        /// From the phone hello to the result notification (what the person at the door waits for).
        public var exchange: Duration = .zero
    }

    public struct Outcome: Sendable {
        public let result: TapResultMessage
        public let mtu: Int
        public let timing: Timing
        /// The tap protocol version spoken (`TapProtocol.version`).
        public var protocolVersion: Int64 { TapProtocol.version }
        /// `full` (both hellos, presentation, result) or `fast` (a FAST request and its result).
        public let mode: TapMode
        /// Why a phone holding FAST keys ran the full exchange (nil for a FAST tap, or a phone without
        /// a FAST keyring).
        public let fastFallback: TapFastFallback?
    }

    /// Runs one tap on a connected `client` for `action`, presenting at `now` (the phone's clock).
    /// - Throws: `PhoneTapError`, or `GATTClientError` for a broken ATT exchange.
    /// `lockID`: the lock the phone believes it connected to (its FAST key is looked up by it); when
    /// nil and the phone holds FAST keys, it reads Lock Info to learn it.
    public static func run(client: GATTClient, phone: TapPhone, action: TapAction, now: Date, lockID: String? = nil,
                           resultTimeout: Duration = .seconds(10), tryFast: Bool = true) async throws -> Outcome {
        let clock = ContinuousClock()
        var timing = Timing()
        let t0 = clock.now
        let mtu = try await client.exchangeMTU(clientRxMTU: ATT.maximumMTU)
        guard let service = try await client.discoverPrimaryServices(uuid: KeywayLockService.service).first else {
            throw PhoneTapError.lockServiceNotFound
        }
        let characteristics = try await client.discoverCharacteristics(of: service)
        func find(_ uuid: BluetoothUUID, _ name: String) throws -> GATTRemoteCharacteristic {
            guard let c = characteristics.first(where: { $0.uuid == uuid }) else { throw PhoneTapError.lockServiceIncomplete(name) }
            return c
        }
        let hello = try find(KeywayLockService.readerHello, "reader hello")
        let presentation = try find(KeywayLockService.presentation, "presentation")
        var result = try find(KeywayLockService.result, "result")
        result.descriptors = try await client.discoverDescriptors(of: result)
        try await client.subscribe(result)
        var t1 = clock.now
        timing.setup = t1 - t0

        // FAST first, when the phone holds keys: one request, one authenticated result.
        var fastFallback: TapFastFallback? = nil
        if tryFast, let keyring = phone.fastKeys {
            var lock = lockID
            if lock == nil, !keyring.all.isEmpty, let info = characteristics.first(where: { $0.uuid == KeywayLockService.lockInfo }) {
                lock = (try? CBORDecoder().decode(try await client.read(info.valueHandle)))?[2]?.textValue
                t1 = clock.now
                timing.setup = t1 - t0
            }
            let start: TapPhone.FastStart
            do { start = try lock.map { try phone.fastStart(lockID: $0, action: action, at: now) } ?? .fallBack(.noKey) } catch {
                throw PhoneTapError.phoneRefusedLock(error)
            }
            switch start {
            case .fallBack(let why):
                fastFallback = why
            case .request(let fast):
                if let fastCharacteristic = characteristics.first(where: { $0.uuid == KeywayLockService.fast }) {
                    do {
                        try await client.write(fastCharacteristic.valueHandle, fast.request)
                        let bytes = try await collectResult(client: client, valueHandle: result.valueHandle, timeout: resultTimeout)
                        timing.exchange = clock.now - t1
                        do {
                            return Outcome(result: try fast.result(bytes), mtu: mtu, timing: timing, mode: .fast, fastFallback: nil)
                        } catch {
                            throw PhoneTapError.resultNotAuthenticated(claimed: try? TapResultMessage(decoding: bytes), why: "\(error)")
                        }
                    } catch GATTClientError.attError(.application(let code), _, _)
                                where code == LockGATT.ApplicationError.fastKeyUnknown || code == LockGATT.ApplicationError.fastRevocationListChanged {
                        fastFallback = code == LockGATT.ApplicationError.fastKeyUnknown ? .lockKeyUnknown : .revocationListChanged
                    }
                } else {
                    fastFallback = .lockKeyUnknown
                }
                // The lock will not take this key again: the full exchange makes a new one.
                keyring.forget(fast.lockID)
            }
        }

        // Protocol v2: the phone hello (ephemeral key, transaction id) is written to Reader Hello, then
        // the reader's answer, signed over both, is read back.
        let opening: TapPhone.Opening
        do { opening = try phone.open() } catch { throw PhoneTapError.phoneRefusedLock(error) }
        let helloBytes: [UInt8]
        do {
            try await client.write(hello.valueHandle, opening.phoneHello)
            helloBytes = try await client.read(hello.valueHandle)
        } catch let e as GATTClientError {
            throw PhoneTapError.helloRefused(e)
        }
        let pending: TapPhone.Pending
        do { pending = try opening.present(readerHello: helloBytes, action: action, at: now) } catch {
            throw PhoneTapError.phoneRefusedLock(error)
        }
        for fragment in TapFragments.split(pending.presentation) {
            try await client.write(presentation.valueHandle, fragment)
        }
        // The lock notifies before it answers the final write, so the result is normally queued
        // already; the timeout covers a lock that never answers.
        let bytes = try await collectResult(client: client, valueHandle: result.valueHandle, timeout: resultTimeout)
        timing.exchange = clock.now - t1
        do {
            let answer = try pending.result(bytes)
            phone.rememberFastKey(after: pending, result: answer)
            return Outcome(result: answer, mtu: mtu, timing: timing, mode: .full, fastFallback: fastFallback)
        } catch {
            throw PhoneTapError.resultNotAuthenticated(claimed: try? TapResultMessage(decoding: bytes), why: "\(error)")
        }
    }

    /// Reassembles the result notification's fragments, bounded in size and time.
    static func collectResult(client: GATTClient, valueHandle: UInt16, timeout: Duration) async throws -> [UInt8] {
        try await withThrowingTaskGroup(of: [UInt8]?.self) { group in
            group.addTask {
                var reassembler = TapReassembler(limit: TapProtocol.maxResultSize)
                for await n in client.notifications where n.valueHandle == valueHandle {
                    do {
                        if case .complete(let bytes) = try reassembler.add(n.value) { return bytes }
                    } catch {
                        throw PhoneTapError.resultNotAuthenticated(claimed: nil, why: "result fragments: \(error)")
                    }
                }
                throw PhoneTapError.noResult("the connection closed first")
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let bytes = first else {
                throw PhoneTapError.noResult("none within \(timeout)")
            }
            return bytes
        }
    }
}
