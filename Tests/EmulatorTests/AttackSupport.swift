import BLE
import Foundation
import Synchronization
import XCTest
@testable import Emulator
import Events
import Hardware
import KeywayCrypto
@_spi(NonConformantPhone) import MobileKey

// Support for AttackSuiteTests: an emulator on the coworking site with simulated time, a raw GATT
// "phone" that can write any bytes to a lock's Presentation characteristic, a forged reader (a fake
// lock peripheral) and a bearer spy, plus journal assertions. Everything goes through the real
// loopback radio, GATT server, tap protocol, lock and journal — nothing is mocked.

/// One emulator for one test: Fixtures/sites/coworking.yaml, simulated clock, a fresh data directory.
final class AttackBench {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// Monday 2026-11-23 08:00:00 UTC (00:00 in San Francisco).
    static let start = Date(timeIntervalSince1970: 1_795_420_800)

    let dir: URL
    let emu: Emulator

    private init(dir: URL, emu: Emulator) { self.dir = dir; self.emu = emu }

    static func make(apiToken: String? = nil) async throws -> AttackBench {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kw-attack-\(UUID().uuidString)")
        var o = EmulatorOptions(sitePath: root.appendingPathComponent("Fixtures/sites/coworking.yaml").path)
        o.dataDir = dir.path
        o.clock = .simulated
        o.clockStart = start
        o.listenPort = 0
        o.apiToken = apiToken
        return AttackBench(dir: dir, emu: try await Emulator.start(o))
    }

    func shutdown() async {
        await emu.shutdown()
        try? FileManager.default.removeItem(at: dir)
    }

    var clock: SimulatedClock { emu.simulatedClock! }
    var now: Date { emu.clock.now() }
    var siteID: String { emu.config.siteID }

    func gatt(_ lockID: String) throws -> LockGATT {
        try XCTUnwrap(emu.lockGATT(lockID), "no lock \(lockID)")
    }

    func lock(_ lockID: String) throws -> Lock {
        try XCTUnwrap(emu.site.lock(lockID), "no lock \(lockID)")
    }

    // MARK: Keys


    /// Issues a key through the emulator (`POST /v1/keys` minus HTTP) and returns it as stored.
    func issue(_ obj: [String: Any]) async throws -> IssuedKey {
        let r = try await emu.issueKey(json: obj)
        let id = try XCTUnwrap(r["key_id"] as? String)
        return try XCTUnwrap(try emu.store.key(id: id))
    }

    /// The holder's phone for a built-in key: its credential, its private key, the site's issuer.
    func phone(_ key: IssuedKey, holder: P256.PrivateKey? = nil, cache: LockCertificateCache? = nil) throws -> TapPhone {
        let own = try key.holderPrivateKeyPEM.map { try P256.PrivateKey(pem: $0) }
        return try phone(credential: key.credential, holder: XCTUnwrap(holder ?? own, "no holder key"), cache: cache)
    }

    /// A phone presenting arbitrary credential bytes, proving possession with `holder`.
    func phone(credential: [UInt8], holder: P256.PrivateKey, cache: LockCertificateCache? = nil, fastKeys: TapFastKeyring? = nil) -> TapPhone {
        TapPhone(credential: credential, holderKey: holder, siteID: siteID, trustedIssuers: emu.keys.trustedIssuers,
                 certificateCache: cache, fastKeys: fastKeys)
    }

    /// The holder's phone for a built-in key, keeping FAST keys in `keyring`.
    func fastPhone(_ key: IssuedKey, keyring: TapFastKeyring) throws -> TapPhone {
        phone(credential: key.credential, holder: try P256.PrivateKey(pem: try XCTUnwrap(key.holderPrivateKeyPEM)), fastKeys: keyring)
    }

    /// Emulator API tap (tags, PINs), as `POST /v1/taps` minus HTTP.
    func apiTap(_ obj: [String: Any]) async throws -> [String: Any] {
        try await emu.tap(json: obj)
    }

    // MARK: Journal

    /// The journal position after everything recorded so far: events of an attack come after it.
    func mark() async throws -> Int64 {
        await emu.bridge.flush()
        return try await emu.journal.lastPosition()
    }

    /// Journaled events after `mark`, of `types` (all types when empty), for one lock or all.
    func events(after mark: Int64, lock: String? = nil, types: Set<EventType> = []) async throws -> [RecordedEvent] {
        await emu.bridge.flush()
        return try await emu.journal.events(EventQuery(types: types, lock: lock, after: mark == 0 ? nil : mark, limit: 10_000))
    }

    /// Access decisions (granted or denied) journaled after `mark` at `lock`.
    func decisions(after mark: Int64, lock: String) async throws -> [RecordedEvent] {
        try await events(after: mark, lock: lock, types: [.accessGranted, .accessDenied])
    }

    /// Asserts that exactly one access decision was journaled at `lock` since `mark`, that it is the
    /// record of `decision` (when given), that its type and reason are the expected ones, and returns it.
    @discardableResult
    func expectOneDecision(at lock: String, after mark: Int64, granted: Bool = false, reason: String?, method: Events.AccessMethod = .mobile,
                           decision: Decision? = nil, apiResponse: [String: Any]? = nil,
                           file: StaticString = #filePath, line: UInt = #line) async throws -> RecordedEvent {
        let got = try await decisions(after: mark, lock: lock)
        if got.count != 1 {
            let all = try await events(after: mark)
            XCTFail("all events after the mark: \(all.map { "\($0.source.path) \($0.type.shortName) \($0.event.reason ?? "-")" })", file: file, line: line)
        }
        XCTAssertEqual(got.count, 1, "access events at \(lock): \(got.map { "\($0.type.shortName) \($0.event.reason ?? "-")" })", file: file, line: line)
        let e = try XCTUnwrap(got.first, "no access event at \(lock)", file: file, line: line)
        XCTAssertEqual(e.type, granted ? .accessGranted : .accessDenied, file: file, line: line)
        XCTAssertEqual(e.event.reason, reason, file: file, line: line)
        XCTAssertEqual(e.event.method, method, file: file, line: line)
        if let decision {
            XCTAssertEqual(decision.granted, granted, file: file, line: line)
            XCTAssertEqual(decision.reason?.rawValue, reason, "the lock's decision", file: file, line: line)
            let id = await emu.bridge.eventID(for: decision.record)
            XCTAssertEqual(id, e.id, "the journaled event is the record of this decision", file: file, line: line)
        }
        if let apiResponse {
            XCTAssertEqual(apiResponse["result"] as? String, granted ? "granted" : "denied", file: file, line: line)
            XCTAssertEqual(apiResponse["reason"] as? String, reason, file: file, line: line)
            XCTAssertEqual(apiResponse["event_id"] as? String, e.id, "the API names the journaled event", file: file, line: line)
        }
        return e
    }
}

// MARK: - A raw GATT connection to a lock

/// A central connected to one lock of the emulator over a `LoopbackLink`: MTU, discovery and result
/// subscription done, then nothing is automatic — the test reads hellos and writes whatever bytes it
/// likes to Presentation. Result notifications are reassembled (bounded) as a phone would.
final class RawGATTPhone: @unchecked Sendable {
    let client: GATTClient
    /// The lock side of this connection, with the lock's decisions on it.
    let session: LockGATT.Session
    var server: GATTServer { session.server }
    let gatt: LockGATT
    let helloHandle: UInt16
    let presentationHandle: UInt16
    let resultHandle: UInt16
    /// The FAST characteristic (every emulated lock offers it).
    var fastHandle: UInt16? { gatt.handles.fast }

    private let results = Locked<(done: [[UInt8]], taken: Int)>(([], 0))
    private var pump: Task<Void, Never>?

    private init(client: GATTClient, session: LockGATT.Session, gatt: LockGATT, hello: UInt16, presentation: UInt16, result: UInt16) {
        self.client = client; self.session = session; self.gatt = gatt
        helloHandle = hello; presentationHandle = presentation; resultHandle = result
    }

    static func connect(to gatt: LockGATT, distance: Double = 0) async throws -> RawGATTPhone {
        let link = LoopbackLink()
        let session = try gatt.open(link.peripheral, distance: distance)
        let client = try GATTClient(bearer: link.central)
        _ = try await client.exchangeMTU(clientRxMTU: ATT.maximumMTU)
        let services = try await client.discoverPrimaryServices(uuid: KeywayLockService.service)
        let service = try XCTUnwrap(services.first)
        let chars = try await client.discoverCharacteristics(of: service)
        func find(_ uuid: BluetoothUUID) throws -> GATTRemoteCharacteristic { try XCTUnwrap(chars.first { $0.uuid == uuid }) }
        var result = try find(KeywayLockService.result)
        result.descriptors = try await client.discoverDescriptors(of: result)
        let phone = RawGATTPhone(client: client, session: session, gatt: gatt, hello: try find(KeywayLockService.readerHello).valueHandle,
                                 presentation: try find(KeywayLockService.presentation).valueHandle, result: result.valueHandle)
        phone.startPump()
        try await client.subscribe(result)
        return phone
    }

    private func startPump() {
        let client = client, handle = resultHandle
        pump = Task { [weak self] in
            var reassembler = TapReassembler(limit: TapProtocol.maxResultSize)
            for await n in client.notifications where n.valueHandle == handle {
                // A result that does not reassemble is simply never delivered (nextResult fails the test).
                if case .complete(let bytes)? = try? reassembler.add(n.value) { self?.results.withLock { $0.done.append(bytes) } }
            }
        }
    }

    func close() {
        client.close()
        pump?.cancel()
    }

    /// Reads Reader Hello as it stands (a version 1 phone's first step; the answer to this
    /// connection's phone hello once one was written).
    func readHello() async throws -> [UInt8] { try await client.read(helloHandle) }

    /// Writes a phone hello (protocol v2, step 2) to Reader Hello.
    func writePhoneHello(_ bytes: [UInt8]) async throws { try await client.write(helloHandle, bytes) }

    /// Starts a tap with `phoneHello` (a fresh random one when nil) and returns the reader hello
    /// answering it: the lock's session on this connection.
    @discardableResult
    func hello(_ phoneHello: [UInt8]? = nil) async throws -> [UInt8] {
        let bytes = try phoneHello ?? PhoneHello(phoneEphemeralKey: try P256.PrivateKey().publicKey.uncompressed,
                                                  transactionID: try SecureRandom.bytes(TapProtocol.transactionIDSize)).encoded()
        try await writePhoneHello(bytes)
        return try await readHello()
    }

    /// `phone`'s hello written, and the reader hello answering it.
    func open(_ phone: TapPhone) async throws -> (opening: TapPhone.Opening, readerHello: [UInt8]) {
        let opening = try phone.open()
        return (opening, try await hello(opening.phoneHello))
    }

    /// A whole exchange up to the presentation: `phone`'s hello, the reader's answer, and the
    /// presentation the phone builds (after all its checks) at `now`.
    func pending(_ phone: TapPhone, action: TapAction = .open, at now: Date) async throws -> TapPhone.Pending {
        let (opening, hello) = try await open(phone)
        return try opening.present(readerHello: hello, action: action, at: now)
    }

    /// Writes a FAST request (one write) and returns the result notification; throws the lock's ATT
    /// error when it answers with no decision (0x86, 0x87).
    func fast(_ request: [UInt8]) async throws -> [UInt8] {
        try await client.write(try XCTUnwrap(fastHandle, "no FAST characteristic"), request)
        return try await nextResult()
    }

    /// A full exchange by `phone`; on an authenticated grant the phone keeps the FAST key (as PhoneTap does).
    func fullTap(_ phone: TapPhone, action: TapAction = .open, at now: Date) async throws -> TapResultMessage {
        let pending = try await self.pending(phone, action: action, at: now)
        let result = try pending.result(try await present(pending.presentation))
        phone.rememberFastKey(after: pending, result: result)
        return result
    }

    /// Writes one raw fragment (`[index, flags] ‖ chunk`) as one ATT write.
    func writeFragment(_ fragment: [UInt8]) async throws { try await client.write(presentationHandle, fragment) }

    /// Writes `message` as the protocol's fragments and returns the result notification.
    func present(_ message: [UInt8]) async throws -> [UInt8] {
        for f in TapFragments.split(message) { try await writeFragment(f) }
        return try await nextResult()
    }

    /// The next complete result notification (the lock notifies before it answers the final write,
    /// so it is normally here already; waits a little real time for the pump task).
    func nextResult(file: StaticString = #filePath, line: UInt = #line) async throws -> [UInt8] {
        for _ in 0..<2000 {
            let r: [UInt8]? = results.withLock { s in
                guard s.taken < s.done.count else { return nil }
                s.taken += 1
                return s.done[s.taken - 1]
            }
            if let r { return r }
            try await Task.sleep(for: .milliseconds(1))
        }
        XCTFail("no result notification", file: file, line: line)
        throw PhoneTapError.noResult("test timeout")
    }

    /// Results notified but not yet taken (to prove a write produced no decision).
    var pendingResults: Int { results.withLock { $0.done.count - $0.taken } }

    /// The lock's decision for the last presentation on this connection.
    var lastDecision: Decision? { session.decisions.last }
}

// MARK: - A malicious phone that holds the session keys

/// Builds presentations the way `TapPhone` does, but lets the test put anything inside the sealed
/// payload: a phone (or an app under the attacker's control) holds its own session keys, so the
/// lock's checks behind decryption — payload parsing, credential, proof, action — face arbitrary bytes.
struct CraftedTap {
    let phoneHello: PhoneHello
    let hello: ReaderHello
    let helloBytes: [UInt8]
    let ephemeral: P256.PrivateKey
    let keys: TapKeySchedule

    /// Writes a phone hello of its own on `c` and derives the tap's keys from the lock's answer.
    static func open(_ c: RawGATTPhone) async throws -> CraftedTap {
        let ephemeral = try P256.PrivateKey()
        let phoneHello = PhoneHello(phoneEphemeralKey: ephemeral.publicKey.uncompressed, transactionID: try SecureRandom.bytes(TapProtocol.transactionIDSize))
        return try CraftedTap(ephemeral: ephemeral, phoneHello: phoneHello, helloBytes: try await c.hello(phoneHello.encoded()))
    }

    init(ephemeral: P256.PrivateKey, phoneHello: PhoneHello, helloBytes: [UInt8]) throws {
        self.ephemeral = ephemeral; self.phoneHello = phoneHello; self.helloBytes = helloBytes
        hello = try ReaderHello(decoding: helloBytes)
        let lockEphemeral = try P256.PublicKey(uncompressed: hello.lockEphemeralKey)
        keys = try TapKeySchedule(sharedSecret: try ECDH.sharedSecret(ephemeral, lockEphemeral), phoneHelloBytes: phoneHello.encoded(),
                                  readerHelloBytes: helloBytes, transactionID: phoneHello.transactionID, nonce: hello.nonce)
    }

    /// The proof of possession a genuine phone makes for `action`.
    func proof(_ action: TapAction, holder: P256.PrivateKey) throws -> [UInt8] {
        try ECDSA.sign(keys.proofInput(action), with: holder)
    }

    /// A presentation sealing `payload` (any bytes) under this tap's keys.
    func seal(_ payload: [UInt8]) throws -> [UInt8] {
        let sealed = try AESGCM.seal(payload, key: keys.presentationKey, nonce: keys.presentationNonce, associatedData: keys.transcriptHash)
        return Presentation(sealed: sealed).encoded()
    }

    /// Authenticates a result with this tap's result key (what the crafted phone can check).
    func authenticatedResult(_ bytes: [UInt8]) throws -> TapResultMessage {
        let msg = try TapResultMessage(decoding: bytes)
        guard let mac = msg.mac, mac == (try keys.resultMAC(msg)) else { throw TapPhoneError.resultNotAuthenticated }
        return msg
    }
}

// MARK: - A forged reader (fake lock peripheral) and a bearer spy

/// Records every ATT PDU the wrapped bearer receives: what the phone sent to the peripheral.
final class ATTSpyBearer: ATTBearer {
    let base: any ATTBearer
    private let received = Locked<[[UInt8]]>([])
    var linkMTU: Int { base.linkMTU }

    init(wrapping base: any ATTBearer) { self.base = base }

    func start(_ receiver: @escaping ATTBearerReceiver) throws {
        try base.start { [weak self] event in
            if case .pdu(let pdu) = event { self?.received.withLock { $0.append(pdu) } }
            receiver(event)
        }
    }
    func send(_ pdu: [UInt8]) throws { try base.send(pdu) }
    func close() { base.close() }

    var pdus: [[UInt8]] { received.withLock { $0 } }

    /// PDUs that write (or queue a write of) `handle`: Write Request/Command, Signed Write, Prepare Write.
    func writes(to handle: UInt16) -> [[UInt8]] {
        let lo = UInt8(handle & 0xff), hi = UInt8(handle >> 8)
        return pdus.filter { p in
            guard p.count >= 3, [0x12, 0x52, 0xD2, 0x16].contains(p[0]) else { return false }
            return p[1] == lo && p[2] == hi
        }
    }
    /// Execute Write Requests (a queued long write being committed).
    var executeWrites: [[UInt8]] { pdus.filter { $0.first == 0x18 } }
}

/// A fake lock: the Keyway lock service with a hello of the attacker's making — fixed bytes, or
/// made (signed) for the phone hello it was written — and it records every presentation written to
/// it: the test proves a genuine phone writes none.
final class ForgedReader: @unchecked Sendable {
    let database: GATTDatabase
    let handles: KeywayLockService.Handles
    private let presented: Recorder

    /// Presentations the fake lock received (a class so the handler can hold it before `self` exists).
    final class Recorder: Sendable {
        let values = Locked<[[UInt8]]>([])
        let phoneHello = Locked<[UInt8]?>(nil)
    }

    convenience init(hello: [UInt8]) throws {
        try self.init(answer: { _ in hello })
    }

    /// `answer` makes the reader hello from the phone hello written on the connection (nil if none).
    init(answer: @escaping @Sendable ([UInt8]?) async throws -> [UInt8]) throws {
        let presented = Recorder()
        self.presented = presented
        database = try KeywayLockService.database(deviceName: "Main entrance", handlers: .init(
            readerHello: { _ in try await answer(presented.phoneHello.withLock { $0 }) },
            phoneHello: { _, value in presented.phoneHello.withLock { $0 = value } },
            presentation: { _, value in presented.values.withLock { $0.append(value) } },
            lockInfo: { _ in [] }))
        handles = try XCTUnwrap(KeywayLockService.Handles(in: database))
    }

    var presentations: [[UInt8]] { presented.values.withLock { $0 } }

    /// Runs a genuine phone's whole tap against this reader; returns the phone's error and the spy.
    func tap(with phone: TapPhone, at now: Date) async throws -> (error: Error?, spy: ATTSpyBearer) {
        let link = LoopbackLink()
        let spy = ATTSpyBearer(wrapping: link.peripheral)
        let server = try GATTServer(database: database, bearer: spy)
        _ = server
        let client = try GATTClient(bearer: link.central)
        defer { client.close() }
        do {
            _ = try await PhoneTap.run(client: client, phone: phone, action: .open, now: now, resultTimeout: .milliseconds(100))
            return (nil, spy)
        } catch {
            return (error, spy)
        }
    }
}

// MARK: - Bytes

extension Array where Element == UInt8 {
    /// Index of the first occurrence of `needle`.
    func firstIndex(of needle: [UInt8]) -> Int? {
        guard !needle.isEmpty, needle.count <= count else { return nil }
        for i in 0...(count - needle.count) where self[i..<(i + needle.count)].elementsEqual(needle) { return i }
        return nil
    }

    func flipping(bit: Int = 0, at index: Int) -> [UInt8] {
        var b = self
        b[index] ^= UInt8(1 << bit)
        return b
    }
}
