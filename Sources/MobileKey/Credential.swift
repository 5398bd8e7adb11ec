import Foundation
import KeywayCrypto

/// CWT claim keys (RFC 8392 §4, RFC 8747 §3.1) and Keyway's private claims.
///
/// Private claims use the CWT private-use range (integer keys below -65536, RFC 8392 §9.1).
/// Keyway reserves -65537 … -65599 in it: a key in that block that this version does not know
/// makes the credential malformed (deny by default — an unknown restriction must never be ignored);
/// unknown claims outside the block are ignored, as CWT processing rules allow.
public enum CWTClaim {
    public static let iss: Int64 = 1
    public static let sub: Int64 = 2
    public static let aud: Int64 = 3
    public static let exp: Int64 = 4
    public static let nbf: Int64 = 5
    public static let iat: Int64 = 6
    public static let cti: Int64 = 7
    public static let cnf: Int64 = 8
    /// `cnf` member holding a COSE_Key (RFC 8747 §3.2).
    public static let cnfCOSEKey: Int64 = 1

    /// Weekly schedule: `[tz: tstr, windows: [[weekday, startMinute, endMinute], …]]`.
    public static let schedule: Int64 = -65537
    /// Office-mode right: bool.
    public static let officeMode: Int64 = -65538
    /// Credential kind: tstr (`CredentialKind`).
    public static let kind: Int64 = -65539

    /// The block of the private-use range reserved for Keyway claims.
    public static let keywayPrivateRange: ClosedRange<Int64> = -65599 ... -65537
}

/// What carries the credential. Only these values are accepted; a new kind is a protocol change.
public enum CredentialKind: String, Sendable, CaseIterable, Codable {
    /// A phone's mobile key (the tap protocol over BLE).
    case mobile
    /// A key held by a wearable (watch) paired with the user's phone — same protocol, separate
    /// kind so events and revocations can tell them apart.
    case wearable
}

/// A weekly recurring set of access windows in an IANA time zone (the site's).
///
/// Windows are on the local wall clock: `[weekday, startMinute, endMinute)` with ISO weekdays
/// (1 = Monday … 7 = Sunday), minutes since local midnight, start inclusive, end exclusive,
/// `0 ≤ start < end ≤ 1440`. A window never crosses midnight: 22:00–02:00 is two windows.
/// Local time is derived from the instant with Foundation's TimeZone rules, so daylight-saving
/// transitions need no special cases (09:00 is 09:00 local in summer and in winter).
public struct WeeklySchedule: Sendable, Hashable {
    public struct Window: Sendable, Hashable, Comparable {
        public let weekday: Int
        public let startMinute: Int
        public let endMinute: Int

        public init(weekday: Int, startMinute: Int, endMinute: Int) throws(ScheduleError) {
            guard (1...7).contains(weekday) else { throw .invalidWindow("weekday \(weekday) not in 1…7") }
            guard startMinute >= 0, endMinute <= 1440, startMinute < endMinute else {
                throw .invalidWindow("minutes \(startMinute)–\(endMinute) not within 0 ≤ start < end ≤ 1440")
            }
            self.weekday = weekday
            self.startMinute = startMinute
            self.endMinute = endMinute
        }

        /// Convenience: `weekday` with "HH:MM" bounds ("24:00" allowed as an end).
        public init(weekday: Int, from start: String, to end: String) throws(ScheduleError) {
            func minutes(_ s: String) throws(ScheduleError) -> Int {
                let parts = s.split(separator: ":")
                guard parts.count == 2, let h = Int(parts[0]), let m = Int(parts[1]), (0...24).contains(h), (0...59).contains(m),
                      h < 24 || m == 0 else { throw .invalidWindow("time \"\(s)\" is not HH:MM") }
                return h * 60 + m
            }
            try self.init(weekday: weekday, startMinute: minutes(start), endMinute: minutes(end))
        }

        public static func < (a: Window, b: Window) -> Bool {
            (a.weekday, a.startMinute, a.endMinute) < (b.weekday, b.startMinute, b.endMinute)
        }
    }

    public enum ScheduleError: Error, Equatable, Sendable, CustomStringConvertible {
        case unknownTimeZone(String)
        case invalidWindow(String)
        case tooManyWindows(Int)

        public var description: String {
            switch self {
            case .unknownTimeZone(let z): return "unknown time zone \"\(z)\""
            case .invalidWindow(let why): return "invalid schedule window: \(why)"
            case .tooManyWindows(let n): return "\(n) schedule windows (at most \(WeeklySchedule.maxWindows))"
            }
        }
    }

    public static let maxWindows = 64

    public let timeZone: TimeZone
    /// Sorted, so equal schedules encode identically.
    public let windows: [Window]

    public var timeZoneIdentifier: String { timeZone.identifier }

    public init(timeZone identifier: String, windows: [Window]) throws(ScheduleError) {
        guard let tz = TimeZone(identifier: identifier) else { throw .unknownTimeZone(identifier) }
        guard windows.count <= WeeklySchedule.maxWindows else { throw .tooManyWindows(windows.count) }
        self.timeZone = tz
        self.windows = windows.sorted()
    }

    /// Windows for the given weekdays, each `from`–`to` ("HH:MM"), e.g. Mon–Fri 09:00–18:00.
    public init(timeZone identifier: String, weekdays: [Int], from: String, to: String) throws(ScheduleError) {
        var w: [Window] = []
        for d in weekdays { w.append(try Window(weekday: d, from: from, to: to)) }
        try self.init(timeZone: identifier, windows: w)
    }

    /// Whether the instant falls in a window, on the local clock of the schedule's time zone.
    public func contains(_ date: Date) -> Bool {
        let (weekday, minute) = localWeekdayAndMinute(date)
        for w in windows where w.weekday == weekday && w.startMinute <= minute && minute < w.endMinute {
            return true
        }
        return false
    }

    /// ISO weekday (1 = Monday) and minute of the day of `date` in the schedule's time zone.
    public func localWeekdayAndMinute(_ date: Date) -> (weekday: Int, minute: Int) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let c = calendar.dateComponents([.weekday, .hour, .minute], from: date)
        // Foundation numbers weekdays 1 = Sunday … 7 = Saturday; ISO 8601 uses 1 = Monday … 7 = Sunday.
        let iso = ((c.weekday ?? 1) + 5) % 7 + 1
        return (iso, (c.hour ?? 0) * 60 + (c.minute ?? 0))
    }

    public var cbor: CBOR {
        .array([.text(timeZone.identifier),
                .array(windows.map { .array([.int($0.weekday), .int($0.startMinute), .int($0.endMinute)]) })])
    }

    public init(cbor: CBOR) throws(ScheduleError) {
        guard case .array(let parts) = cbor, parts.count == 2, let tz = parts[0].textValue,
              case .array(let items) = parts[1] else { throw .invalidWindow("schedule is not [tz, [windows]]") }
        guard items.count <= WeeklySchedule.maxWindows else { throw .tooManyWindows(items.count) }
        var windows: [Window] = []
        windows.reserveCapacity(items.count)
        for item in items {
            guard case .array(let w) = item, w.count == 3,
                  let d = w[0].intValue, let s = w[1].intValue, let e = w[2].intValue,
                  let di = Int(exactly: d), let si = Int(exactly: s), let ei = Int(exactly: e)
            else { throw .invalidWindow("window is not [weekday, start, end] integers") }
            windows.append(try Window(weekday: di, startMinute: si, endMinute: ei))
        }
        try self.init(timeZone: tz, windows: windows)
    }

    public static func == (a: WeeklySchedule, b: WeeklySchedule) -> Bool {
        a.timeZone.identifier == b.timeZone.identifier && a.windows == b.windows
    }

    public func hash(into h: inout Hasher) {
        h.combine(timeZone.identifier)
        h.combine(windows)
    }
}

/// Why a claims set is not a Keyway credential.
public enum CredentialError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    /// No `cnf` COSE_Key: the credential could be presented by anyone who copied it.
    case missingProofKey

    public var description: String {
        switch self {
        case .malformed(let why): return "credential malformed: \(why)"
        case .missingProofKey: return "credential has no proof-of-possession key (cnf)"
        }
    }
}

/// The claims of a Keyway mobile key (see docs/PROTOCOL.md, "Credential").
public struct Credential: Sendable, Hashable {
    public static let keyIDLength = 16
    public static let maxLocks = 64

    /// `iss`: the site the key opens doors of.
    public var siteID: String
    /// `sub`: the user (member, guest) it was issued to.
    public var userID: String
    /// `aud`: the locks it opens.
    public var lockIDs: [String]
    /// `nbf`/`exp`: whole seconds; `exp` is the first instant at which the key is invalid.
    public var notBefore: Date
    public var expires: Date
    /// `iat`, optional on input (always written by `CredentialIssuer`).
    public var issuedAt: Date?
    /// `cti`: 16 random bytes; the handle revocation lists use.
    public var keyID: [UInt8]
    /// `cnf`: the phone's P-256 key; the tap protocol proves possession of its private half.
    public var holderKey: P256.PublicKey
    /// Optional weekly restriction; nil means any time within nbf…exp.
    public var schedule: WeeklySchedule?
    /// May toggle office mode (passage) on locks that allow it.
    public var officeMode: Bool
    public var kind: CredentialKind

    public init(siteID: String, userID: String, lockIDs: [String], notBefore: Date, expires: Date,
                issuedAt: Date?, keyID: [UInt8], holderKey: P256.PublicKey, schedule: WeeklySchedule? = nil,
                officeMode: Bool = false, kind: CredentialKind = .mobile) {
        self.siteID = siteID
        self.userID = userID
        self.lockIDs = lockIDs
        self.notBefore = notBefore
        self.expires = expires
        self.issuedAt = issuedAt
        self.keyID = keyID
        self.holderKey = holderKey
        self.schedule = schedule
        self.officeMode = officeMode
        self.kind = kind
    }

    /// The CWT claims map (the COSE payload, before encoding).
    public var claims: CBOR {
        var m: [CBOR: CBOR] = [
            .int(CWTClaim.iss): .text(siteID),
            .int(CWTClaim.sub): .text(userID),
            .int(CWTClaim.aud): .array(lockIDs.map { .text($0) }),
            .int(CWTClaim.exp): .int(Credential.seconds(expires)),
            .int(CWTClaim.nbf): .int(Credential.seconds(notBefore)),
            .int(CWTClaim.cti): .bytes(keyID),
            .int(CWTClaim.cnf): [.int(CWTClaim.cnfCOSEKey): COSEKey.cbor(holderKey)],
            .int(CWTClaim.officeMode): .bool(officeMode),
            .int(CWTClaim.kind): .text(kind.rawValue),
        ]
        if let issuedAt { m[.int(CWTClaim.iat)] = .int(Credential.seconds(issuedAt)) }
        if let schedule { m[.int(CWTClaim.schedule)] = schedule.cbor }
        return .map(m)
    }

    /// NumericDate: whole seconds since the epoch, fraction dropped.
    static func seconds(_ d: Date) -> Int64 {
        let t = d.timeIntervalSince1970.rounded(.down)
        guard t.isFinite, t > -9.2e18, t < 9.2e18 else { return t < 0 ? Int64.min : Int64.max }
        return Int64(t)
    }

    /// Limits for a credential payload: well above anything an issuer writes (≈ 300 bytes).
    public static let payloadLimits = CBORDecoder.Limits(maxDepth: 6, maxItems: 64, maxLength: 256, maxBytes: 4096)
    /// Limits for a whole credential (COSE_Sign1 around the payload).
    public static let messageLimits = CBORDecoder.Limits(maxDepth: 4, maxItems: 16, maxLength: 4096, maxBytes: 6144)

    /// Parses an encoded claims map (the COSE payload). This is on every verification, so it reads
    /// the bytes directly instead of building a CBOR tree — with the same strictness and bounds as
    /// `CBORDecoder(limits: Credential.payloadLimits)` (shared `CBORParser` rules), and the same
    /// claim rules as `init(claims:)`.
    public init(payload: [UInt8]) throws(CredentialError) {
        guard payload.count <= Credential.payloadLimits.maxBytes else {
            throw .malformed("claims: \(CBORError.tooLarge(size: payload.count, limit: Credential.payloadLimits.maxBytes))")
        }
        var fields = ClaimFields()
        do {
            var p = CBORParser(bytes: payload, limits: Credential.payloadLimits)
            let h = try p.head()
            guard h.major == 5 else { throw ClaimTypeError("claims are not a map") }
            try p.forEachMapEntry(h, depth: 0) { key, p in try fields.read(key, from: &p) }
            guard p.atEnd else { throw CBORError.trailingBytes(at: p.pos) }
        } catch let e as CBORError {
            throw .malformed("claims: \(e)")
        } catch let e as ClaimTypeError {
            throw .malformed(e.why)
        } catch let e as CredentialError {
            throw e
        } catch {
            throw .malformed("\(error)")
        }
        try self.init(fields)
    }

    /// Parses and validates a claims map given as a tree (re-encoded, then read like received
    /// bytes, so there is one set of claim rules). Types and required claims are checked here;
    /// validity for a given lock and instant is `Verifier`'s job.
    public init(claims item: CBOR) throws(CredentialError) {
        try self.init(payload: item.encoded())
    }

    private init(_ f: ClaimFields) throws(CredentialError) {
        guard let iss = f.iss, !iss.isEmpty else { throw .malformed("iss missing or not text") }
        guard let sub = f.sub, !sub.isEmpty else { throw .malformed("sub missing or not text") }
        guard let locks = f.aud else { throw .malformed("aud missing or not text/array") }
        guard let exp = f.exp else { throw .malformed("exp missing or not an integer") }
        guard let nbf = f.nbf else { throw .malformed("nbf missing or not an integer") }
        guard nbf < exp else { throw .malformed("nbf is not before exp") }
        guard let cti = f.cti, cti.count == Credential.keyIDLength else { throw .malformed("cti missing or not 16 bytes") }
        guard let kindText = f.kind else { throw .malformed("kind missing or not text") }
        guard let kind = CredentialKind(rawValue: kindText) else { throw .malformed("unknown kind \"\(kindText)\"") }
        var schedule: WeeklySchedule?
        if let s = f.schedule {
            do { schedule = try WeeklySchedule(timeZone: s.tz, windows: s.windows) } catch { throw .malformed("schedule: \(error)") }
        }
        // Proof key last among the structural checks: a credential without one is reported as
        // such only when everything else about it is well formed.
        guard f.cnfPresent, let point = f.holderKey else { throw .missingProofKey }
        let holder: P256.PublicKey
        do { holder = try P256.PublicKey(x: point.x, y: point.y) } catch { throw .malformed("cnf COSE_Key: \(COSEKey.DecodeError.notOnCurve)") }
        self.init(siteID: iss, userID: sub, lockIDs: locks,
                  notBefore: Date(timeIntervalSince1970: TimeInterval(nbf)),
                  expires: Date(timeIntervalSince1970: TimeInterval(exp)),
                  issuedAt: f.iat.map { Date(timeIntervalSince1970: TimeInterval($0)) },
                  keyID: cti, holderKey: holder, schedule: schedule, officeMode: f.officeMode, kind: kind)
    }

    /// Decodes a credential *without verifying its signature* — for `keyway keys inspect` and
    /// diagnostics only. Never base an access decision on it; use `Verifier`.
    public static func inspect(_ bytes: [UInt8]) throws -> (message: COSESign1, credential: Credential) {
        let message = try COSESign1(decoding: bytes, limits: messageLimits)
        return (message, try Credential(payload: message.payload))
    }
}

// MARK: - Direct claims reading

private struct ClaimTypeError: Error {
    let why: String
    init(_ why: String) { self.why = why }
}

/// Claims as read from the payload, before the cross-claim rules are applied.
private struct ClaimFields {
    var iss: String?
    var sub: String?
    var aud: [String]?
    var exp: Int64?
    var nbf: Int64?
    var iat: Int64?
    var cti: [UInt8]?
    var cnfPresent = false
    var holderKey: (x: [UInt8], y: [UInt8])?
    var schedule: (tz: String, windows: [WeeklySchedule.Window])?
    var officeMode = false
    var kind: String?

    mutating func read(_ key: Int64, from p: inout CBORParser) throws {
        switch key {
        case CWTClaim.iss: iss = try p.readText("iss")
        case CWTClaim.sub: sub = try p.readText("sub")
        case CWTClaim.aud:
            let h = try p.head()
            switch h.major {
            case 3: aud = [try p.textBody(h)] // RFC 8392 allows a single string
            case 4:
                let n = try p.containerCount(h, depth: 1)
                guard n >= 1, n <= Credential.maxLocks else { throw ClaimTypeError("aud must list 1…\(Credential.maxLocks) locks") }
                var locks: [String] = []
                locks.reserveCapacity(n)
                for _ in 0..<n { locks.append(try p.readText("aud entry")) }
                aud = locks
            default: throw ClaimTypeError("aud missing or not text/array")
            }
        case CWTClaim.exp: exp = try p.readInt("exp")
        case CWTClaim.nbf: nbf = try p.readInt("nbf")
        case CWTClaim.iat: iat = try p.readInt("iat")
        case CWTClaim.cti: cti = try p.readBytes("cti")
        case CWTClaim.cnf:
            cnfPresent = true
            let h = try p.head()
            guard h.major == 5 else { throw ClaimTypeError("cnf not a map") }
            var key: (x: [UInt8], y: [UInt8])?
            try p.forEachMapEntry(h, depth: 1) { member, p in
                if member == CWTClaim.cnfCOSEKey { key = try p.readCOSEKey(depth: 2) } else { _ = try p.item(depth: 2) }
            }
            holderKey = key
        case CWTClaim.schedule:
            let h = try p.head()
            guard h.major == 4, try p.containerCount(h, depth: 1) == 2 else { throw ClaimTypeError("schedule: not [tz, [windows]]") }
            let tz = try p.readText("schedule time zone")
            let wh = try p.head()
            guard wh.major == 4 else { throw ClaimTypeError("schedule: windows not an array") }
            let n = try p.containerCount(wh, depth: 2)
            guard n <= WeeklySchedule.maxWindows else { throw ClaimTypeError("schedule: \(WeeklySchedule.ScheduleError.tooManyWindows(n))") }
            var windows: [WeeklySchedule.Window] = []
            windows.reserveCapacity(n)
            for _ in 0..<n {
                let eh = try p.head()
                guard eh.major == 4, try p.containerCount(eh, depth: 3) == 3 else {
                    throw ClaimTypeError("schedule: window is not [weekday, start, end] integers")
                }
                let d = try p.readInt("weekday"), s = try p.readInt("start"), e = try p.readInt("end")
                guard let di = Int(exactly: d), let si = Int(exactly: s), let ei = Int(exactly: e) else {
                    throw ClaimTypeError("schedule: window out of range")
                }
                do { windows.append(try WeeklySchedule.Window(weekday: di, startMinute: si, endMinute: ei)) } catch {
                    throw ClaimTypeError("schedule: \(error)")
                }
            }
            schedule = (tz, windows)
        case CWTClaim.officeMode:
            let h = try p.head()
            guard h.major == 7, h.argument == 20 || h.argument == 21 else { throw ClaimTypeError("office-mode claim not a bool") }
            officeMode = h.argument == 21
        case CWTClaim.kind: kind = try p.readText("kind")
        default:
            if CWTClaim.keywayPrivateRange.contains(key) { throw ClaimTypeError("unknown Keyway claim \(key)") }
            _ = try p.item(depth: 1) // other claims are ignored (CWT processing rules), but must be well formed
        }
    }
}

extension CBORParser {
    fileprivate mutating func readText(_ what: String) throws -> String {
        let h = try head()
        guard h.major == 3 else { throw ClaimTypeError("\(what) not text") }
        return try textBody(h)
    }

    fileprivate mutating func readBytes(_ what: String) throws -> [UInt8] {
        let h = try head()
        guard h.major == 2 else { throw ClaimTypeError("\(what) not a byte string") }
        return Array(try stringBody(h))
    }

    fileprivate mutating func readInt(_ what: String) throws -> Int64 {
        let h = try head()
        guard h.major == 0 || h.major == 1, h.argument <= UInt64(Int64.max) else { throw ClaimTypeError("\(what) not an integer") }
        return h.major == 0 ? Int64(h.argument) : ~Int64(h.argument)
    }

    /// An EC2/P-256 public COSE_Key's coordinates (same rules as `COSEKey.publicKey(from:)`; the
    /// point itself is validated when the key is built).
    fileprivate mutating func readCOSEKey(depth: Int) throws -> (x: [UInt8], y: [UInt8]) {
        let h = try head()
        guard h.major == 5 else { throw ClaimTypeError("cnf COSE_Key: \(COSEKey.DecodeError.notAMap)") }
        var kty: Int64?, crv: Int64?, x: [UInt8]?, y: [UInt8]?, hasD = false
        var bad = false, badUse = false
        try forEachMapEntry(h, depth: depth) { label, p in
            switch label {
            case COSEKey.kty: kty = try p.readIntOrSkip(depth: depth + 1)
            case COSEKey.crv: crv = try p.readIntOrSkip(depth: depth + 1)
            case COSEKey.x, COSEKey.y:
                let vh = try p.head()
                if vh.major == 2 {
                    let b = Array(try p.stringBody(vh))
                    if label == COSEKey.x { x = b } else { y = b }
                } else {
                    p.pos = vh.start
                    _ = try p.item(depth: depth + 1)
                    bad = true
                }
            case COSEKey.d: hasD = true; _ = try p.item(depth: depth + 1)
            case COSEKey.alg:
                // Present: ES256 (−7) only. A key declared for another algorithm is not this proof's key.
                if try p.readIntOrSkip(depth: depth + 1) != -7 { badUse = true }
            case COSEKey.keyOps:
                // Present: an array of operation ids that includes verify.
                guard case .array(let ops) = try p.item(depth: depth + 1),
                      ops.contains(where: { $0.intValue == COSEKey.keyOpVerify }) else { badUse = true; break }
            default: _ = try p.item(depth: depth + 1)
            }
        }
        guard !badUse else { throw ClaimTypeError("cnf COSE_Key: alg is not ES256 (-7) or key_ops lacks verify") }
        guard kty == COSEKey.ktyEC2 else { throw ClaimTypeError("cnf COSE_Key: \(COSEKey.DecodeError.wrongKeyType)") }
        guard crv == COSEKey.crvP256 else { throw ClaimTypeError("cnf COSE_Key: \(COSEKey.DecodeError.wrongCurve)") }
        guard !hasD else { throw ClaimTypeError("cnf COSE_Key: \(COSEKey.DecodeError.containsPrivateKey)") }
        guard !bad, let x, let y, x.count == 32, y.count == 32 else { throw ClaimTypeError("cnf COSE_Key: \(COSEKey.DecodeError.badCoordinates)") }
        return (x, y)
    }

    /// An integer, or nil after skipping a value of another type (which must still be well formed).
    fileprivate mutating func readIntOrSkip(depth: Int) throws -> Int64? {
        let h = try head()
        if (h.major == 0 || h.major == 1), h.argument <= UInt64(Int64.max) {
            return h.major == 0 ? Int64(h.argument) : ~Int64(h.argument)
        }
        pos = h.start
        _ = try item(depth: depth)
        return nil
    }
}
