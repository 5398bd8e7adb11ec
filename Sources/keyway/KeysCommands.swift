import ArgumentParser
import Foundation
import KeywayCrypto
import MobileKey

struct SiteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "site", abstract: "Create and inspect site key material.",
                                                    subcommands: [Init.self])

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a site: issuer key, a device key and certificate per lock, a starter site file.")
        @Argument(help: "Directory to create the site in.") var dir: String
        @Option(name: .customLong("id"), help: "Site id.") var siteID = "my-site"
        @Option(name: .customLong("lock"), help: "Lock id (repeatable).") var locks: [String] = ["front-door", "meeting-room-1", "back-door"]
        @Option(help: "IANA time zone of the site.") var timeZone = "UTC"

        func run() throws {
            let keys: SiteKeys
            do { keys = try SiteKeys.create(dir: dir, siteID: siteID, lockIDs: locks, now: Date()) }
            catch { throw UserFacingError("keyway site init: \(error)") }
            let siteFile = dir + "/site.yaml"
            if !FileManager.default.fileExists(atPath: siteFile) {
                try starterSiteYAML(siteID: siteID, timeZone: timeZone, locks: locks).write(toFile: siteFile, atomically: true, encoding: .utf8)
            }
            // Keys are never printed: only where they are and the public identifiers.
            print("created site \(keys.siteID) in \(dir)")
            print("  issuer key   \(dir)/issuer.key.pem (private, mode 0600)  kid \(Hex.encode(keys.issuerKeyID))")
            print("  issuer pub   \(dir)/issuer.pub.pem")
            for id in keys.lockIDs { print("  lock         \(id): \(dir)/locks/\(id).key.pem + \(id).cert") }
            print("  site file    \(siteFile)")
        }
    }
}

func starterSiteYAML(siteID: String, timeZone: String, locks: [String]) -> String {
    var s = """
    # Starter site written by `keyway site init`. Edit freely; see Fixtures/sites/coworking.yaml for every field.
    organisation: My Coworking
    site:
      id: \(siteID)
      name: \(siteID)
      time_zone: \(timeZone)
    locks:

    """
    for (i, id) in locks.enumerated() {
        s += "  - id: \(id)\n    name: \(id)\n    kind: wall_reader\n    position: {x: \(Double(i) * 3), y: 0}\n"
    }
    s += """
    iqs:
      - id: iq-1
        position: {x: 0, y: 2}
        activation_pin: "246810"
    access_groups:
      - id: members
        locks: [\(locks.joined(separator: ", "))]
        schedule: ["mon-sun 00:00-24:00"]
    users: []

    """
    return s
}

struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "keys", abstract: "Issue, inspect and verify digital keys.",
                                                    subcommands: [Issue.self, Inspect.self, Verify.self])

    struct Issue: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Issue a signed digital key (COSE_Sign1 CWT) to a phone key.")
        @Option(help: "Site directory (from `keyway site init`).") var site: String
        @Option(help: "User id.") var user: String
        @Option(name: .customLong("lock"), help: "Lock id (repeatable).") var locks: [String]
        @Option(help: "Valid from (ISO 8601). Default: now.") var from: String?
        @Option(help: "Valid until (ISO 8601). Default: 24 h after --from.") var until: String?
        @Option(help: "Grace before and after the window in seconds (bookings: 900 or 1800).") var grace: Int = 0
        @Flag(help: "Grant the office-mode right.") var officeMode = false
        @Option(help: "The phone's public key (SPKI PEM).") var holderKey: String
        @Option(help: "Output file for the raw COSE_Sign1 bytes.") var out: String

        func validate() throws {
            if locks.isEmpty { throw ValidationError("--lock: at least one lock") }
            if grace < 0 || grace > 86_400 { throw ValidationError("--grace: 0...86400 seconds") }
        }

        func run() throws {
            let keys: SiteKeys
            do { keys = try SiteKeys.load(dir: site) } catch { throw UserFacingError("--site \(site): \(error)") }
            let pem: String
            do { pem = try String(contentsOfFile: holderKey, encoding: .utf8) } catch { throw UserFacingError("--holder-key \(holderKey): cannot read") }
            let holder: P256.PublicKey
            do { holder = try P256.PublicKey(pem: pem) } catch { throw UserFacingError("--holder-key \(holderKey): \(error)") }
            let start = try from.map { try parseISO8601($0, option: "--from") } ?? Date()
            let end = try until.map { try parseISO8601($0, option: "--until") } ?? start + 86_400
            guard end > start else { throw ValidationError("--until must be after --from") }
            let request = CredentialRequest(userID: user, lockIDs: locks, holderKey: holder,
                                            validity: .booking(start: start, end: end, grace: TimeInterval(grace)), officeMode: officeMode)
            let issued: IssuedCredential
            do { issued = try keys.issuer.issue(request, issuedAt: Date()) } catch { throw UserFacingError("keyway keys issue: \(error)") }
            try Data(issued.bytes).write(to: URL(fileURLWithPath: out))
            print("issued key \(Hex.encode(issued.credential.keyID)) for \(user) → \(out) (\(issued.bytes.count) bytes), valid \(formatISO8601(issued.credential.notBefore)) – \(formatISO8601(issued.credential.expires))")
        }
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show what a key says (without verifying it).")
        @Argument var file: String
        @Flag var json = false

        func run() throws {
            let bytes = try readKeyFile(file)
            let c: Credential
            do { c = try Credential.inspect(bytes).credential } catch { throw UserFacingError("\(file): not a Keyway credential: \(error)") }
            let summary = CredentialSummary(c)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(summary), as: UTF8.self))
            } else {
                for (k, v) in summary.rows { print("\(k.padding(toLength: 18, withPad: " ", startingAt: 0)) \(v)") }
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Would this lock accept the key? Exit 0 yes, 1 no (with the reason), 2 usage.")
        @Argument var file: String
        @Option var site: String
        @Option var lock: String
        @Option(help: "Instant to verify at (ISO 8601). Default: now.") var at: String?
        @Flag var json = false

        func run() throws {
            let keys: SiteKeys
            do { keys = try SiteKeys.load(dir: site) } catch { throw UserFacingError("--site \(site): \(error)") }
            let bytes = try readKeyFile(file)
            let instant = try at.map { try parseISO8601($0, option: "--at") } ?? Date()
            var revocations = RevocationList.empty(siteID: keys.siteID)
            let listPath = site + "/revocations.cose"
            if let data = FileManager.default.contents(atPath: listPath) {
                do { revocations = try RevocationList(verifying: Array(data), issuers: keys.trustedIssuers, siteID: keys.siteID) }
                catch { throw UserFacingError("\(listPath): \(error)") }
            }
            let verdict = Verifier(siteID: keys.siteID, lockID: lock, issuers: keys.trustedIssuers).verify(bytes, at: instant, revocations: revocations)
            switch verdict {
            case .granted(let c):
                if json { print(#"{"result":"granted","user":"\#(c.userID)","key_id":"\#(Hex.encode(c.keyID))"}"#) }
                else { print("granted: \(c.userID) at \(lock)") }
            case .denied(let reason):
                if json { print(#"{"result":"denied","reason":"\#(reason.rawValue)"}"#) }
                else { print("denied: \(reason.rawValue)") }
                throw ExitCode(1)
            }
        }
    }
}

/// What `keys inspect` shows of a credential: its JSON object (`--json`) and the same fields as a table.
struct CredentialSummary: Encodable {
    let site: String
    let user: String
    let locks: [String]
    let keyID: String
    let notBefore: String
    let expires: String
    let officeMode: Bool
    let kind: String
    let holderKeyX: String
    let scheduleTimeZone: String?
    /// `weekday start-end`, in minutes of the day.
    let scheduleWindows: [String]?

    enum CodingKeys: String, CodingKey {
        case site, user, locks, kind, expires
        case keyID = "key_id", notBefore = "not_before", officeMode = "office_mode", holderKeyX = "holder_key_x"
        case scheduleTimeZone = "schedule_time_zone", scheduleWindows = "schedule_windows"
    }

    init(_ c: Credential) {
        site = c.siteID
        user = c.userID
        locks = c.lockIDs
        keyID = Hex.encode(c.keyID)
        notBefore = formatISO8601(c.notBefore)
        expires = formatISO8601(c.expires)
        officeMode = c.officeMode
        kind = c.kind.rawValue
        holderKeyX = Hex.encode(c.holderKey.x)
        scheduleTimeZone = c.schedule?.timeZoneIdentifier
        scheduleWindows = c.schedule.map { $0.windows.map { "\($0.weekday) \($0.startMinute)-\($0.endMinute)" } }
    }

    /// `(key, text)` sorted by key, as the table prints them; a list reads `["a", "b"]`.
    var rows: [(String, String)] {
        func list(_ xs: [String]) -> String { "[" + xs.map { "\"\($0)\"" }.joined(separator: ", ") + "]" }
        var rows: [(String, String)] = [
            ("site", site), ("user", user), ("locks", list(locks)), ("key_id", keyID), ("not_before", notBefore),
            ("expires", expires), ("office_mode", "\(officeMode)"), ("kind", kind), ("holder_key_x", holderKeyX),
        ]
        if let scheduleTimeZone { rows.append(("schedule_time_zone", scheduleTimeZone)) }
        if let scheduleWindows { rows.append(("schedule_windows", list(scheduleWindows))) }
        return rows.sorted { $0.0 < $1.0 }
    }
}

func readKeyFile(_ path: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else { throw UserFacingError("\(path): cannot read") }
    guard data.count <= 16_384 else { throw UserFacingError("\(path): \(data.count) bytes is too large for a credential") }
    return Array(data)
}
