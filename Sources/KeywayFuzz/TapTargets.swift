import Foundation
import KeywayCrypto
@_spi(TapVectors) import MobileKey

/// The tap protocol's parsers on both sides: what a phone reads from a reader (hello, result) and
/// what a lock reads from a phone (fragments, presentation, and the sealed payload inside it).
enum TapFuzz {
    /// Phone side: a reader hello from whatever answers the fixture phone's hello. The phone must
    /// build a presentation only for a hello that is genuinely from a certified lock of its site,
    /// signed over this very phone hello, at a lock time within 60 s, for a lock in the credential's
    /// `aud` (it reveals nothing otherwise).
    static let hello = FuzzTarget("tap-hello", maxLength: 1024,
        "TapPhone.Opening.present(readerHello:); a presentation may be built only for a hello that checks out independently") { input, check in
        let f = FuzzFixture.shared
        let opening = f.opening(cache: helloCache)
        guard let pending = try? opening.present(readerHello: input, action: .open, at: f.now) else { return }
        guard let hello = try? ReaderHello(decoding: input),
              let cert = try? LockCertificate(verifying: hello.certificate, issuers: f.issuers, siteID: f.siteID, at: f.now),
              cert.lockID == hello.lockID,
              ECDSA.verify(hello.signature, of: hello.toBeSigned(siteID: f.siteID, phoneHello: opening.hello), by: cert.deviceKey) else {
            throw check.fail("the phone answered a hello that is not from a certified lock")
        }
        guard abs(Double(hello.lockTime) - f.now.timeIntervalSince1970) <= TapProtocol.lockTimeTolerance, hello.lockID == f.lockID else {
            throw check.fail("the phone answered a lock outside its credential or off its clock")
        }
        guard !pending.presentation.isEmpty, pending.lockID == hello.lockID else {
            throw check.fail("presentation empty or for another lock")
        }
    }
    /// The phone's certificate cache, as an app keeps it (keyed by exact bytes, so it cannot vouch for
    /// a mutated certificate).
    static let helloCache = LockCertificateCache()

    /// Lock side: a phone hello from anyone. The lock answers only a well-formed version 2 hello whose
    /// key is a point on P-256, and its answer is signed over exactly that hello.
    static let phoneHello = FuzzTarget("tap-phone-hello", maxLength: 128,
        "TapLockIdentity.startSession(phoneHello:); an answered hello re-encodes to itself, its key is on the curve, the answer verifies") { input, check in
        let f = FuzzFixture.shared
        guard let session = try? f.lockIdentity().startSession(phoneHello: input, now: f.now) else { return }
        guard let decoded = try? PhoneHello(decoding: input), decoded.encoded() == input,
              (try? P256.PublicKey(uncompressed: decoded.phoneEphemeralKey)) != nil else {
            throw check.fail("answered a phone hello that does not decode strictly")
        }
        guard ECDSA.verify(session.hello.signature, of: session.hello.toBeSigned(siteID: f.siteID, phoneHello: decoded), by: f.deviceKey.publicKey) else {
            throw check.fail("the reader hello is not signed over the phone hello it answers")
        }
    }

    /// Lock side: raw presentation bytes on a fresh session. Nothing here was sealed to the session's
    /// keys, so nothing may be accepted.
    static let presentation = FuzzTarget("tap-presentation", maxLength: 4096,
        "TapLockSession.evaluate on raw bytes (outer framing, replay guard, nonce, decryption); must never accept") { input, check in
        let f = FuzzFixture.shared
        let session = try f.session()
        if case .accepted = session.evaluate(input, now: f.now, revocations: f.revocations) {
            throw check.fail("accepted a presentation not sealed to this session")
        }
        _ = try? Presentation(decoding: input)
    }

    /// Lock side, past the encryption: the input is the payload a genuine phone seals to the session
    /// (credential, action, proof). An input whose proof is empty gets a genuine proof by the fixture
    /// holder, so the grant path and the action checks are reachable too.
    static let payload = FuzzTarget("tap-payload", maxLength: 4096,
        "payload sealed to a real session, then TapLockSession.evaluate; a grant must pass every check independently") { input, check in
        let f = FuzzFixture.shared
        let phoneHello = try P256.PrivateKey()
        let fresh = f.phone().open(ephemeral: phoneHello, transactionID: f.transactionID)
        let session = try f.lockIdentity().startSession(phoneHello: fresh.phoneHello, now: f.now)
        let lockKey = try P256.PublicKey(uncompressed: session.hello.lockEphemeralKey)
        let keys = try TapKeySchedule(sharedSecret: try ECDH.sharedSecret(phoneHello, lockKey), phoneHelloBytes: fresh.phoneHello,
                                      readerHelloBytes: session.helloBytes, transactionID: f.transactionID, nonce: session.hello.nonce)
        var plain = input
        if var decoded = try? PresentationPayload(decoding: input), decoded.proof.isEmpty {
            decoded.proof = try ECDSA.sign(keys.proofInput(decoded.action), with: f.holderKey)
            plain = decoded.encoded()
        }
        let sealed = try AESGCM.seal(plain, key: keys.presentationKey, nonce: keys.presentationNonce, associatedData: keys.transcriptHash)
        let bytes = Presentation(sealed: sealed).encoded()
        guard case .accepted(let credential, let action) = session.evaluate(bytes, now: f.now, revocations: f.revocations) else { return }
        guard let decoded = try? PresentationPayload(decoding: plain), decoded.action == action,
              case .granted(let verified) = f.verifier.verify(decoded.credential, at: f.now, revocations: f.revocations),
              verified.keyID == credential.keyID,
              ECDSA.verify(decoded.proof, of: keys.proofInput(action), by: verified.holderKey) else {
            throw check.fail("accepted a payload that does not pass the checks independently")
        }
        if action != .open, !verified.officeMode { throw check.fail("office-mode action without the right") }
    }

    /// Phone side: the lock's result notification, checked against the MAC keyed by the session.
    /// Only the genuine result (same fields) may authenticate.
    static let result = FuzzTarget("tap-result", maxLength: 256,
        "TapPhone.Pending.result(_:) after a real exchange; only a result with the genuine fields authenticates") { input, check in
        let exchange = ResultExchange.shared
        guard let message = try? exchange.pending.result(input) else { return }
        guard message.granted == exchange.genuine.granted, message.reason == exchange.genuine.reason,
              message.openMilliseconds == exchange.genuine.openMilliseconds else {
            throw check.fail("a forged result authenticated: \(message)")
        }
    }

    /// Lock side: a FAST request from anyone, at a lock holding one FAST key (a real full exchange's,
    /// fresh for each input, so genuine seeds are granted). A grant must pass every check
    /// independently: strict decoding, the MAC under that key, counter, phone time, the action's right.
    static let fast = FuzzTarget("tap-fast", maxLength: 128,
        "TapLockIdentity.evaluateFast on a lock with one FAST key; a grant must check out independently, a fall-back only for a foreign key id") { input, check in
        let f = FuzzFixture.shared, exchange = FastExchange.shared
        let identity = f.lockIdentity()
        identity.fastKeys.store(exchange.key, credential: exchange.credential, revocationListVersion: f.revocations.version)
        switch identity.evaluateFast(input, now: f.now, revocations: f.revocations) {
        case .fallBack(let why):
            guard why == .lockKeyUnknown, let r = try? FastRequest(decoding: input), r.keyID != exchange.key.keyID else {
                throw check.fail("fell back (\(why)) for a request under the key the lock holds")
            }
        case .evaluated(.accepted(_, let action), let resultKey):
            guard let r = try? FastRequest(decoding: input), r.encoded() == input, r.keyID == exchange.key.keyID,
                  r.action == action, (try? exchange.key.requestMAC(r.macInput)) == r.mac,
                  abs(Double(r.phoneTime) - f.now.timeIntervalSince1970) <= TapFast.requestLifetime,
                  resultKey == (try? exchange.key.sessionKey(request: input)) else {
                throw check.fail("granted a FAST request that does not check out independently")
            }
            if action != .open, !exchange.credential.officeMode { throw check.fail("office-mode action without the right") }
        case .evaluated:
            break
        }
    }

    /// Lock side: presentation fragments as GATT writes deliver them. Input: [length (2 bytes, big-endian), bytes…]*.
    static let fragments = FuzzTarget("tap-fragments", maxLength: 8192,
        "TapReassembler.add over a sequence of fragments; a completed message is exactly the last in-order run of chunks, within 4096 bytes") { input, check in
        var reassembler = TapReassembler()
        var fed: [[UInt8]] = []
        for fragment in FuzzInput.records(input) {
            fed.append(fragment)
            guard case .complete(let message)? = try? reassembler.add(fragment) else { continue }
            // A completed message is exactly the chunks of the last n+1 fragments written, numbered
            // 0…n in order, the last one flagged: nothing of a refused or earlier message leaks in.
            let n = Int(fragment[0])
            guard fragment.count >= 2, fragment[1] & 1 == 1, fed.count >= n + 1 else {
                throw check.fail("completed on fragment \(fragment.prefix(2)) after \(fed.count) writes")
            }
            let run = fed.suffix(n + 1)
            guard run.enumerated().allSatisfy({ $0.element.count >= 2 && Int($0.element[0]) == $0.offset }),
                  message == run.flatMap({ $0.dropFirst(2) }), message.count <= TapProtocol.maxPresentationSize else {
                throw check.fail("reassembled \(message.count) bytes differ from the in-order chunks written")
            }
            fed = []
        }
    }
}

/// A FAST key as the fixture phone and lock derive it after a full exchange — from the exporter
/// secret and credential of the recorded tap in Fixtures/vectors/tap-v2.json (same keys, lock and
/// site), so it is the same on every run and the seeds stay genuine — for the FAST target and its seeds.
final class FastExchange: Sendable {
    static let shared: FastExchange = {
        do { return try FastExchange() } catch { fatalError("fuzz fixture: FAST key failed: \(error)") }
    }()
    let key: TapFastKey
    let credential: Credential
    let phone: TapPhone

    init() throws {
        let f = FuzzFixture.shared
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: FuzzPaths.vectors.appendingPathComponent("tap-v2.json"))) as? [String: Any]
        // The recorded tap's credential too: the fixture's own is issued afresh (new cti) per process.
        guard let secret = (doc?["exporter_secret"] as? String).flatMap(Hex.decode),
              let bytes = (doc?["credential"] as? String).flatMap(Hex.decode),
              case .granted(let c) = f.verifier.verify(bytes, at: f.now, revocations: f.revocations) else {
            throw TapPhoneError.resultNotAuthenticated
        }
        phone = TapPhone(credential: bytes, holderKey: f.holderKey, siteID: f.siteID, trustedIssuers: f.issuers)
        key = try TapFastKey(exporterSecret: secret, siteID: f.siteID, lockID: f.lockID, credential: bytes, credentialKeyID: c.keyID)
        credential = c
    }

    /// Genuine requests as the phone writes them: each action, a few counters.
    func requests() throws -> [[UInt8]] {
        let f = FuzzFixture.shared
        return try TapAction.allCases.enumerated().map { i, action in
            try phone.fastRequest(key, lockID: f.lockID, counter: UInt64(1 + i * 40), action: action, at: f.now).request
        }
    }
}

/// One real exchange between the fixture phone and lock, kept for the result target.
final class ResultExchange: Sendable {
    static let shared: ResultExchange = {
        do { return try ResultExchange() } catch { fatalError("fuzz fixture: tap exchange failed: \(error)") }
    }()
    let pending: TapPhone.Pending
    let genuine: TapResultMessage
    let genuineBytes: [UInt8]

    init() throws {
        let f = FuzzFixture.shared
        let opening = try f.phone().open()
        let session = try f.lockIdentity().startSession(phoneHello: opening.phoneHello, now: f.now)
        pending = try opening.present(readerHello: session.helloBytes, action: .open, at: f.now)
        _ = session.evaluate(pending.presentation, now: f.now, revocations: f.revocations)
        genuineBytes = session.resultMessage(granted: true, reason: nil, openMilliseconds: 7000)
        genuine = try TapResultMessage(decoding: genuineBytes)
    }
}

/// Splits fuzz input into records: each record is a 2-byte big-endian length and that many bytes
/// (the last is cut short if the input ends). Empty records are skipped.
enum FuzzInput {
    static func records(_ input: [UInt8]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var i = 0
        while i + 1 < input.count {
            let n = Int(input[i]) << 8 | Int(input[i + 1]); i += 2
            let end = min(i + n, input.count)
            if end > i { out.append(Array(input[i..<end])) }
            i = end
        }
        return out
    }

    /// The inverse, for seeds.
    static func encodeRecords(_ records: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for r in records { out += [UInt8(truncatingIfNeeded: r.count >> 8), UInt8(truncatingIfNeeded: r.count)]; out += r.prefix(0xFFFF) }
        return out
    }
}
