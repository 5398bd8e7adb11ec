import BLE
import Emulator
import Foundation
import KeywayAPI
import KeywayCrypto
import Hardware
import MobileKey

/// Builds the seed corpora of Fixtures/fuzz/ from real traffic: the credential vectors, objects the
/// fixture issuer signs, a real tap between the fixture phone and lock, and a btsnoop capture of taps
/// through a running emulator (its ATT PDUs seed the ATT server and L2CAP targets).
/// Run with `keyway-fuzz seeds` (rewrites the seed-* files; libFuzzer's own finds stay out of git).
public enum FuzzSeeds {
    public static func generate() async throws -> [String: [[UInt8]]] {
        let f = FuzzFixture.shared
        var seeds: [String: [[UInt8]]] = [:]

        // Signed objects: every credential vector (one per verdict), the vectors' list and certificate,
        // and the fixture's own.
        let vectors = try JSONSerialization.jsonObject(with: Data(contentsOf: FuzzPaths.vectors.appendingPathComponent("credentials.json"))) as? [String: Any] ?? [:]
        let credentials = (vectors["vectors"] as? [[String: Any]] ?? []).compactMap { ($0["credential"] as? String).flatMap(hexBytes) }
        let vectorList = ((vectors["revocation_list"] as? [String: Any])?["signed"] as? String).flatMap(hexBytes)
        let vectorCert = ((vectors["lock_certificate"] as? [String: Any])?["signed"] as? String).flatMap(hexBytes)
        let list = try f.issuer.sign(try f.revocations.revoking([Array(repeating: 0xCD, count: 16)], issuedAt: f.now))
        let objects = credentials + [f.credential, list, f.certificate] + [vectorList, vectorCert].compactMap { $0 }
        seeds["cbor"] = objects + [PresentationPayload(credential: f.credential, action: .open, proof: []).encoded()]
        seeds["cose-sign1"] = objects
        seeds["credential"] = credentials + [f.credential]
        seeds["revocation-list"] = [list] + [vectorList].compactMap { $0 }
        seeds["lock-certificate"] = [f.certificate] + [vectorCert].compactMap { $0 }

        // One real tap per action between the fixture phone and lock.
        // The reader hellos answer the fixture phone's fixed hello (the tap-hello target's phone).
        var hellos: [[UInt8]] = [], phoneHellos: [[UInt8]] = [], presentations: [[UInt8]] = [], results: [[UInt8]] = [], fragments: [[UInt8]] = []
        for action in TapAction.allCases {
            let opening = f.opening()
            let session = try f.lockIdentity().startSession(phoneHello: opening.phoneHello, now: f.now)
            let pending = try opening.present(readerHello: session.helloBytes, action: action, at: f.now)
            let evaluation = session.evaluate(pending.presentation, now: f.now, revocations: f.revocations)
            hellos.append(session.helloBytes)
            phoneHellos.append(try f.phone().open().phoneHello)
            presentations.append(pending.presentation)
            var granted = false
            if case .accepted = evaluation { granted = true }
            results.append(session.resultMessage(granted: granted, reason: evaluation.denial?.code, openMilliseconds: granted ? 7000 : 0))
            for size in [TapFragments.maxFragmentPayload, 100] {
                fragments.append(FuzzInput.encodeRecords(TapFragments.split(pending.presentation, payload: size)))
            }
        }
        seeds["tap-hello"] = hellos
        seeds["tap-phone-hello"] = [f.opening().phoneHello] + phoneHellos
        seeds["tap-presentation"] = presentations
        seeds["tap-result"] = results + [ResultExchange.shared.genuineBytes]
        seeds["tap-fragments"] = fragments
        // FAST requests as the phone makes them after a real full exchange (granted by the target's lock).
        seeds["tap-fast"] = try FastExchange.shared.requests()
        // Empty proofs: the target signs a genuine one, so these reach the grant path.
        seeds["tap-payload"] = TapAction.allCases.map { PresentationPayload(credential: f.credential, action: $0, proof: []).encoded() }
            + credentials.prefix(4).map { PresentationPayload(credential: $0, action: .open, proof: []).encoded() }

        // Taps through a running emulator, captured.
        let capture = try await captureEmulatorTaps()
        seeds["btsnoop"] = [capture]
        let pdus = try BTSnoopReader(bytes: capture).attPDUs()
        // The FAST request the emulator's phone wrote (Write Request to the FAST value handle): real
        // traffic under a key the target's lock does not hold.
        let fastHandle: [UInt8] = [0x1A, 0x00]
        seeds["tap-fast", default: []] += pdus.filter { $0.direction == .received && $0.pdu.count > 3 && $0.pdu[0] == 0x12 && Array($0.pdu[1...2]) == fastHandle }
            .map { Array($0.pdu.dropFirst(3)) }
        // The capture is the lock's: what it received is what the phone sent.
        let fromPhone = pdus.filter { $0.direction == .received }.map(\.pdu)
        let connections = Dictionary(grouping: pdus.filter { $0.direction == .received }, by: \.connectionHandle)
        seeds["att-server"] = connections.keys.sorted().map { FuzzInput.encodeRecords(connections[$0]!.map(\.pdu)) }
            + [FuzzInput.encodeRecords(attProbe)]
        seeds["l2cap-stream"] = [
            FuzzInput.encodeRecords([fromPhone.flatMap { L2CAPBasicFrame(payload: $0).encode() }]),
            FuzzInput.encodeRecords(fromPhone.prefix(8).map { L2CAPBasicFrame(payload: $0).encode() }),
        ]

        // The bundled site, and a small one with every section.
        let coworking = try [UInt8](Data(contentsOf: FuzzPaths.repositoryRoot.appendingPathComponent("Fixtures/sites/coworking.yaml")))
        seeds["site-file"] = [coworking, Array(smallSite.utf8)]

        // One realistic body per operation (the first bytes pick the operation and the id).
        let site = try SiteFile.load(path: FuzzPaths.repositoryRoot.appendingPathComponent("Fixtures/sites/coworking.yaml").path)
        seeds["api-json"] = apiBodies(ids: APIHarness.deviceIDs(site))
        return seeds
    }

    /// Writes the seeds as Fixtures/fuzz/<target>/seed-NNN, replacing earlier seed files.
    public static func write(_ seeds: [String: [[UInt8]]], to root: URL) throws {
        let fm = FileManager.default
        for (target, inputs) in seeds {
            let dir = root.appendingPathComponent(target)
            try fm.createDirectory(at: dir, withIntermediateDirectories: true)
            for name in try fm.contentsOfDirectory(atPath: dir.path) where name.hasPrefix("seed-") {
                try fm.removeItem(at: dir.appendingPathComponent(name))
            }
            for (i, input) in inputs.enumerated() {
                try Data(input).write(to: dir.appendingPathComponent(String(format: "seed-%03d", i)))
            }
        }
    }

    /// Discovery and reads a scanner does before anything else (the first ATT exchange of any phone).
    static let attProbe: [[UInt8]] = [
        [0x02, 0x05, 0x02],                                   // Exchange MTU, 517
        [0x10, 0x01, 0x00, 0xFF, 0xFF, 0x00, 0x28],           // Read By Group Type, primary services
        [0x08, 0x01, 0x00, 0xFF, 0xFF, 0x03, 0x28],           // Read By Type, characteristics
        [0x04, 0x01, 0x00, 0xFF, 0xFF],                       // Find Information
        [0x0A, 0x03, 0x00],                                   // Read, device name
        [0x0C, 0x03, 0x00, 0x02, 0x00],                       // Read Blob
        [0x16, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x41],     // Prepare Write
        [0x18, 0x01],                                         // Execute Write
        [0x52, 0x0A, 0x00, 0x01],                             // Write Command
        [0x1E],                                               // Handle Value Confirmation
    ]

    static func captureEmulatorTaps() async throws -> [UInt8] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keyway-fuzz-seeds-\(getpid())")
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = EmulatorOptions(sitePath: FuzzPaths.repositoryRoot.appendingPathComponent("Fixtures/sites/coworking.yaml").path)
        options.dataDir = dir.path
        options.clock = .simulated
        options.clockStart = Date(timeIntervalSince1970: 1_795_420_800)
        options.capturePath = dir.appendingPathComponent("taps.btsnoop").path
        let emu = try await Emulator.start(options)
        _ = try await emu.issueKey(.init(user: "u-ada", locks: ["main-entrance", "office-101"], officeMode: true))
        _ = try await emu.tap(.init(lock: "main-entrance", user: "u-ada"))
        _ = try await emu.tap(.init(lock: "main-entrance", user: "u-ada"))   // the repeat tap is FAST
        _ = try await emu.tap(.init(lock: "office-101", user: "u-ada", action: .officeModeOn))
        _ = try? await emu.tap(.init(lock: "room-dolores", user: "u-ada"))
        await emu.shutdown()
        return try [UInt8](Data(contentsOf: URL(fileURLWithPath: options.capturePath!)))
    }

    static func apiBodies(ids: [String?]) -> [[UInt8]] {
        let routes = ControlAPIFuzz.routes
        // (path, id, body): ids as a client would send them.
        let examples: [(String, String?, String)] = [
            ("/v1/locks/{id}/open", "main-entrance", #"{"action":"open","user":"u-ada","iq":"iq-lobby"}"#),
            ("/v1/iqs/{id}/online", "iq-lobby", #"{"online":false}"#),
            ("/v1/iqs/{id}/position", "iq-lounge", #"{"x":4.5,"y":-2,"z":1,"range_m":9.1}"#),
            ("/v1/controllers/{id}/power", "ctl-back-door", #"{"on":false}"#),
            ("/v1/doors/{id}/sensor", "back-door", #"{"open":true}"#),
            ("/v1/keys", nil, #"{"user":"u-ada","locks":["main-entrance","office-101"],"not_before":"2026-11-23T08:00:00Z","not_after":"2026-11-24T08:00:00Z","office_mode":true,"schedule":["mon-fri 08:00-18:00"],"grace_before_s":300}"#),
            ("/v1/keys", nil, #"{"user":"u-grace","group":"members"}"#),
            ("/v1/taps", nil, #"{"lock":"main-entrance","user":"u-ada","action":"open","distance_m":0.03}"#),
            ("/v1/taps", nil, #"{"lock":"main-entrance","pin":"4821"}"#),
            ("/v1/taps", nil, #"{"lock":"main-entrance","tag":"04:A2:3B:1C:5D:80"}"#),
            ("/v1/clock/advance", nil, #"{"seconds":7.5}"#),
            ("/v1/clock/set", nil, #"{"time":"2026-11-23T09:00:00Z"}"#),
        ]
        return examples.compactMap { path, id, body in
            guard let op = routes.firstIndex(of: path), let i = ids.firstIndex(of: id) else { return nil }
            return [UInt8(op), UInt8(i)] + Array(body.utf8)
        }
    }

    static let smallSite = """
    version: 1
    organisation: Fuzz Labs
    site:
      id: fuzz-site
      name: Fuzz
      time_zone: Europe/Amsterdam
    locks:
      - id: front
        name: Front door
        kind: wall_reader
        position: {x: 0, y: 0}
        keypad: true
    iqs:
      - id: iq-1
        name: IQ
        position: {x: 1, y: 1, z: 2.5}
        range_m: 9.144
        activation_pin: "123456"
    access_groups:
      - id: all
        name: Everyone
        locks: [front]
        schedule: 24/7
    users:
      - id: u-1
        name: One
        tags: ["04:A1:B2:C3:D4:E5"]
        pin: "1234"
        groups: [all]
    """

    static func hexBytes(_ s: String) -> [UInt8]? {
        guard s.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            let j = s.index(i, offsetBy: 2)
            guard let b = UInt8(s[i..<j], radix: 16) else { return nil }
            out.append(b); i = j
        }
        return out
    }
}
