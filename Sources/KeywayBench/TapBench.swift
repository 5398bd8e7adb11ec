import BLE
import Foundation
import Emulator
import Hardware
import KeywayCrypto
import MobileKey

/// tap_p50_ms / tap_p99_ms: whole taps over the in-process loopback (GATT, tap protocol, lock state
/// machine, journal), next to the same cryptographic operations timed alone in the same run.
func benchTap(_ report: BenchReport) async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kw-bench-tap-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: dir) }
    var o = EmulatorOptions(sitePath: "Fixtures/sites/coworking.yaml")
    o.dataDir = dir.path
    o.clock = .simulated
    let emu = try await Emulator.start(o)
    let keyID = try await emu.issueKey(.init(user: "u-ada", locks: ["main-entrance"])).keyId

    // Full exchanges (the phone would tap FAST once it holds a key: that is fast_tap_p50_us).
    func oneTap() async throws -> Bool {
        try await emu.tapWithKey(keyID, lock: "main-entrance", allowFast: false).granted
    }
    for _ in 0..<50 { _ = try await oneTap() } // warm-up (certificate cache, allocator)
    var samples: [Double] = []
    var granted = 0
    for _ in 0..<1000 {
        let t0 = now()
        if try await oneTap() { granted += 1 }
        samples.append((now() - t0) * 1000)
    }
    await emu.shutdown()
    guard granted == 1000 else { throw BenchError("only \(granted) of 1000 taps granted") }
    samples.sort()

    // The crypto of one tap, alone: lock keygen + hello signature; phone hello check (certificate
    // cached), keygen, ECDH, HKDF, proof signature, AES-GCM seal; lock ECDH, HKDF, AES-GCM open,
    // credential signature and proof verifications; result MAC on both sides.
    let device = try P256.PrivateKey(), holder = try P256.PrivateKey(), issuerKey = try P256.PrivateKey()
    let credentialSig = try ECDSA.sign(Array(repeating: 7, count: 200), with: issuerKey)
    var crypto: [Double] = []
    for _ in 0..<1000 {
        let t0 = now()
        let lockEph = try P256.PrivateKey()
        let hello = Array(repeating: UInt8(1), count: 420)
        let helloSig = try ECDSA.sign(hello, with: device)
        _ = ECDSA.verify(helloSig, of: hello, by: device.publicKey)
        let phoneEph = try P256.PrivateKey()
        let lockEphPub = try P256.PublicKey(uncompressed: lockEph.publicKey.uncompressed)
        let z1 = try ECDH.sharedSecret(phoneEph, lockEphPub)
        let th = SHA256.hash(hello + phoneEph.publicKey.uncompressed)
        let okm = try HKDF.deriveKey(inputKeyMaterial: z1, salt: Array(hello[0..<16]), info: th, outputLength: 44)
        let proof = try ECDSA.sign(Array(repeating: 2, count: 200), with: holder)
        let sealed = try AESGCM.seal(Array(repeating: 3, count: 380), key: Array(okm[0..<16]), nonce: Array(okm[16..<28]), associatedData: th)
        let phoneEphPub = try P256.PublicKey(uncompressed: phoneEph.publicKey.uncompressed)
        let z2 = try ECDH.sharedSecret(lockEph, phoneEphPub)
        let okm2 = try HKDF.deriveKey(inputKeyMaterial: z2, salt: Array(hello[0..<16]), info: th, outputLength: 44)
        _ = try AESGCM.open(sealed, key: Array(okm2[0..<16]), nonce: Array(okm2[16..<28]), associatedData: th)
        _ = ECDSA.verify(credentialSig, of: Array(repeating: 7, count: 200), by: issuerKey.publicKey)
        let holderPub = try P256.PublicKey(uncompressed: holder.publicKey.uncompressed)
        _ = ECDSA.verify(proof, of: Array(repeating: 2, count: 200), by: holderPub)
        _ = try HMACSHA256.authenticate(Array(repeating: 4, count: 20), key: Array(okm2[28..<44]))
        _ = try HMACSHA256.authenticate(Array(repeating: 4, count: 20), key: Array(okm[28..<44]))
        crypto.append((now() - t0) * 1000)
    }
    crypto.sort()
    let cryptoP50 = percentile(crypto, 0.5)
    report.add("tap_p50_ms", percentile(samples, 0.5), unit: "ms", target: "<= 0.5", baseline: cryptoP50, baselineWhat: "the tap's crypto alone, p50 ms")
    report.add("tap_p99_ms", percentile(samples, 0.99), unit: "ms", target: "<= 1.0", baseline: percentile(crypto, 0.99), baselineWhat: "the tap's crypto alone, p99 ms")
    report.add("tap_vs_crypto", percentile(samples, 0.5) / cryptoP50, unit: "ratio", target: "<= 2.0", baseline: cryptoP50, baselineWhat: "the tap's crypto alone, p50 ms")

    try await benchATTRead(report)
}

/// att_read_rtt_us: one ATT Read Request → Read Response over the in-process loopback, median.
func benchATTRead(_ report: BenchReport) async throws {
    let uuid = BluetoothUUID("B80C00FF-1C1F-4153-94CB-D7B58DCACA15")!
    let db = try GATTDatabase(services: [GATTService(uuid: uuid, characteristics: [
        GATTCharacteristic(uuid: BluetoothUUID("B80C00FE-1C1F-4153-94CB-D7B58DCACA15")!, properties: [.read], value: .constant(Array(repeating: 0x42, count: 20))),
    ])])
    let handle = db.handles(of: BluetoothUUID("B80C00FE-1C1F-4153-94CB-D7B58DCACA15")!, in: uuid)!.value
    let link = LoopbackLink()
    let server = try GATTServer(database: db, bearer: link.peripheral)
    let client = try GATTClient(bearer: link.central)
    for _ in 0..<200 { _ = try await client.read(handle) }
    var rtts: [Double] = []
    let start = now()
    for _ in 0..<5000 {
        let t0 = now()
        _ = try await client.read(handle)
        rtts.append((now() - t0) * 1e6)
    }
    let total = now() - start
    client.close()
    _ = server
    rtts.sort()
    // Baseline: an in-process async hop of the same shape (a continuation resumed from another task).
    var hops: [Double] = []
    for _ in 0..<5000 {
        let t0 = now()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in Task.detached { c.resume() } }
        hops.append((now() - t0) * 1e6)
    }
    hops.sort()
    report.add("att_read_rtt_us", percentile(rtts, 0.5), unit: "us", target: "<= 20", baseline: percentile(hops, 0.5),
               baselineWhat: "a bare async task hop, median us")
    print(String(format: "  (5000 ATT reads took %.1f ms in all; 1000 reads ≈ %.1f ms)", total * 1000, total * 200))
}

/// fast_tap_p50_us: FAST repeat taps (docs/PROTOCOL.md, "FAST repeat tap") by the built-in phone over
/// the in-process loopback — GATT, the lock's FAST path and state machine, the journal — after one
/// full exchange made the key; next to the same symmetric crypto timed alone in the same run.
func benchFastTap(_ report: BenchReport) async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kw-bench-fast-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: dir) }
    var o = EmulatorOptions(sitePath: "Fixtures/sites/coworking.yaml")
    o.dataDir = dir.path
    o.clock = .simulated
    let emu = try await Emulator.start(o)
    let keyID = try await emu.issueKey(.init(user: "u-ada", locks: ["main-entrance"])).keyId
    let first = try await emu.tapWithKeyReport(keyID, lock: "main-entrance")
    guard first.mode == .full, first.decision.granted else { throw BenchError("the first tap was not a granted full exchange") }

    func oneTap() async throws -> Bool {
        let r = try await emu.tapWithKeyReport(keyID, lock: "main-entrance")
        return r.mode == .fast && r.decision.granted
    }
    for _ in 0..<50 { _ = try await oneTap() } // warm-up
    var samples: [Double] = []
    var fast = 0
    for _ in 0..<1000 {
        let t0 = now()
        if try await oneTap() { fast += 1 }
        samples.append((now() - t0) * 1e6)
    }
    await emu.shutdown()
    guard fast == 1000 else { throw BenchError("only \(fast) of 1000 repeat taps were granted FAST") }
    samples.sort()

    // The symmetric crypto of one FAST tap, alone: the phone MACs its request and derives K_s; the
    // lock checks the MAC, derives K_s and MACs the result; the phone checks the result's MAC.
    let key = TapFastKey(keyID: Array(repeating: 1, count: TapFast.keyIDSize), key: Array(repeating: 2, count: TapFast.keySize))
    let result = TapResultMessage(granted: true, reason: nil, openMilliseconds: 5000)
    var crypto: [Double] = []
    var counter: UInt64 = 0
    for _ in 0..<5000 {
        counter += 1
        let t0 = now()
        var request = FastRequest(keyID: key.keyID, counter: counter, phoneTime: 1_767_607_200, action: .open)
        request.mac = try key.requestMAC(request.macInput)
        let bytes = request.encoded()
        let phoneSession = try key.sessionKey(request: bytes)
        let received = try FastRequest(decoding: bytes)
        guard constantTimeEqual(try key.requestMAC(received.macInput), received.mac) else { throw BenchError("MAC") }
        let lockSession = try key.sessionKey(request: bytes)
        let mac = try TapResultMessage.mac(result, key: lockSession)
        guard constantTimeEqual(mac, try TapResultMessage.mac(result, key: phoneSession)) else { throw BenchError("result MAC") }
        crypto.append((now() - t0) * 1e6)
    }
    crypto.sort()
    report.add("fast_tap_p50_us", percentile(samples, 0.5), unit: "us", target: "<= 100", baseline: percentile(crypto, 0.5),
               baselineWhat: "the FAST tap's symmetric crypto alone (with request encode/decode), p50 us")
    print(String(format: "  (FAST tap p99 %.1f us; its crypto alone p99 %.1f us)", percentile(samples, 0.99), percentile(crypto, 0.99)))
}
