import BLE
import Foundation
import MobileKey

/// Targets for the bytes that arrive over a link: ATT PDUs at the lock's GATT server, L2CAP basic
/// frames on the cross-process socket bearer, and btsnoop captures read back.
enum RadioFuzz {
    /// One connection to a lock's GATT database (GAP, GATT, Keyway lock service), fed a sequence of
    /// PDUs as one client would send them. Input: [length (2 bytes, BE), PDU]*.
    static let attServer = FuzzTarget("att-server", maxLength: 8192,
        "GATTServer on the lock database fed PDU sequences; one response per request, none per command, every answer well-formed and within ATT_MTU") { input, check in
        let bearer = FuzzBearer()
        let database = try ATTServerFixture.database()
        let server = try GATTServer(database: database, bearer: bearer)
        defer { server.close() }
        for pdu in FuzzInput.records(input) {
            guard !bearer.isClosed else { break }
            let before = bearer.sentCount
            let mtuBefore = server.mtu
            bearer.deliver(pdu)
            let answers = bearer.sent(from: before).filter {
                $0[0] != ATTOpcode.handleValueNotification.rawValue && $0[0] != ATTOpcode.handleValueIndication.rawValue
            }
            let raw = pdu[0]
            let expectsAnswer: Bool
            if let opcode = ATTOpcode(rawValue: raw) { expectsAnswer = opcode.isRequest } else { expectsAnswer = !ATTOpcode.isCommand(raw) }
            if expectsAnswer {
                guard answers.count == 1 || (answers.isEmpty && bearer.isClosed) else {
                    throw check.fail("request 0x\(String(raw, radix: 16)) got \(answers.count) answers")
                }
            } else if !answers.isEmpty {
                throw check.fail("PDU 0x\(String(raw, radix: 16)) (not a request) was answered")
            }
            for answer in bearer.sent(from: before) {
                guard answer.count <= max(mtuBefore, server.mtu) else {
                    throw check.fail("answer of \(answer.count) bytes exceeds ATT_MTU \(server.mtu)")
                }
                guard (try? ATTPDU.decode(answer)) != nil else {
                    throw check.fail("server sent a PDU it cannot decode: \(answer.prefix(8))")
                }
            }
            if let answer = answers.first, answer[0] == ATTOpcode.errorResponse.rawValue {
                guard answer.count == 5, answer[1] == raw else { throw check.fail("error response names the wrong request") }
            } else if let answer = answers.first, let want = ATTOpcode(rawValue: raw)?.responseOpcode, answer[0] != want.rawValue {
                throw check.fail("request 0x\(String(raw, radix: 16)) answered with 0x\(String(answer[0], radix: 16))")
            }
        }
    }

    /// The cross-process loopback's stream framing. Input: [chunk length (2 bytes, BE), bytes]*, each
    /// chunk one read from the socket. Frames must re-encode to exactly the bytes consumed.
    static let l2capStream = FuzzTarget("l2cap-stream", maxLength: 8192,
        "L2CAPStreamDecoder over chunked reads (and L2CAPBasicFrame.decode); frames re-encode to the bytes consumed, bounds hold") { input, check in
        _ = try? L2CAPBasicFrame.decode(input, maximumPayloadLength: 517)
        var decoder = L2CAPStreamDecoder(maximumPayloadLength: 517)
        var received: [UInt8] = []
        var framed: [UInt8] = []
        chunks: for chunk in FuzzInput.records(input) {
            decoder.append(chunk)
            received += chunk
            while true {
                let frame: L2CAPBasicFrame?
                do { frame = try decoder.nextFrame() } catch { break chunks }   // the bearer closes the link here
                guard let frame else { break }
                guard frame.payload.count <= 517 else { throw check.fail("frame of \(frame.payload.count) bytes passed the bound") }
                framed += frame.encode()
            }
            guard framed.count + decoder.bufferedByteCount == received.count,
                  Array(received.prefix(framed.count)) == framed else {
                throw check.fail("frames do not re-encode to the bytes consumed")
            }
        }
    }

    /// A capture file read back (`keyway` reads btsnoop to extract ATT PDUs for tests and tools).
    static let btsnoop = FuzzTarget("btsnoop", maxLength: 16384,
        "BTSnoopReader(bytes:) and attPDUs(); record count bounded by the input size, PDUs never longer than a record") { input, check in
        guard let reader = try? BTSnoopReader(bytes: input) else { return }
        guard reader.records.count <= max(0, input.count - 16) / 24 else {
            throw check.fail("\(reader.records.count) records from \(input.count) bytes")
        }
        guard let pdus = try? reader.attPDUs() else { return }
        let total = pdus.reduce(0) { $0 + $1.pdu.count }
        guard total <= input.count else { throw check.fail("\(total) PDU bytes from a \(input.count)-byte capture") }
    }
}

/// The lock's GATT database with synchronous handlers: a genuine hello, presentations reassembled
/// and answered with a result notification, the lock info value.
enum ATTServerFixture {
    static let hello: [UInt8] = {
        let f = FuzzFixture.shared
        do { return try f.session().helloBytes } catch { fatalError("fuzz fixture: hello: \(error)") }
    }()
    static let lockInfo: [UInt8] = Array(#"{"lock":"front-door","state":"locked","revocation_list_version":2}"#.utf8)

    static func database() throws -> GATTDatabase {
        let reassembler = Locked(TapReassembler())
        let handles = Locked<KeywayLockService.Handles?>(nil)
        let database = try KeywayLockService.database(deviceName: "Keyway front-door", handlers: .init(
            readerHello: { _ in hello },
            phoneHello: { _, value in
                // Protocol v2: the phone hello is parsed as the lock would; the hello read stays the fixture's.
                guard (try? PhoneHello(decoding: value)) != nil else { throw ATTErrorCode.application(0x85) }
            },
            presentation: { context, value in
                let outcome: TapReassembler.Outcome? = reassembler.withLock { r in try? r.add(value) }
                switch outcome {
                case .none: throw ATTErrorCode.valueNotAllowed
                case .needMore?: return
                case .complete(let message)?:
                    let reason = (try? Presentation(decoding: message)) == nil ? "malformed_presentation" : "decryption_failed"
                    let result = TapResultMessage(granted: false, reason: reason, openMilliseconds: 0).encoded()
                    if let h = handles.withLock({ $0 })?.result, result.count <= context.mtu - 3 {
                        _ = try? context.server.notify(valueHandle: h, value: result)
                    }
                }
            },
            lockInfo: { _ in lockInfo }))
        handles.withLock { $0 = KeywayLockService.Handles(in: database) }
        return database
    }
}

/// An ATT bearer driven by the fuzz target: `deliver` hands one PDU to the server on this thread;
/// what the server sends is recorded.
final class FuzzBearer: ATTBearer, Sendable {
    let linkMTU = ATT.maximumMTU
    private struct State {
        var receiver: ATTBearerReceiver?
        var sent: [[UInt8]] = []
        var closed = false
    }
    private let state = Locked(State())

    func start(_ receiver: @escaping ATTBearerReceiver) throws {
        try state.withLock { s throws(ATTBearerError) in
            guard s.receiver == nil else { throw .alreadyStarted }
            s.receiver = receiver
        }
    }

    func send(_ pdu: [UInt8]) throws {
        try validateOutbound(pdu)
        try state.withLock { s throws(ATTBearerError) in
            guard !s.closed else { throw .closed(.local) }
            s.sent.append(pdu)
        }
    }

    func close() {
        // The receiver (the server) is released once closed: it holds this bearer, as real bearers do.
        let receiver = state.withLock { s -> ATTBearerReceiver? in
            guard !s.closed else { return nil }
            s.closed = true
            defer { s.receiver = nil }
            return s.receiver
        }
        receiver?(.closed(.local))
    }

    func deliver(_ pdu: [UInt8]) {
        guard let receiver = state.withLock({ $0.closed ? nil : $0.receiver }) else { return }
        receiver(.pdu(Array(pdu.prefix(linkMTU))))
    }

    var isClosed: Bool { state.withLock { $0.closed } }
    var sentCount: Int { state.withLock { $0.sent.count } }
    func sent(from index: Int) -> [[UInt8]] { state.withLock { Array($0.sent[index...]) } }
}
