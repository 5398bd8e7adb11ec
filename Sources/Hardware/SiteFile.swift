import Foundation
import Yams

/// One problem found in a site file, located at the YAML node that caused it.
public struct SiteFileDiagnostic: Sendable, Hashable, CustomStringConvertible {
    public let file: String
    /// 1-based; 0 when the problem has no position (a configuration built in code).
    public let line: Int
    public let column: Int
    /// The field, as a path from the document root (`locks[2].open_time_s`); empty for syntax errors.
    public let field: String
    public let message: String

    public init(file: String, line: Int, column: Int, field: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        self.message = message
    }

    /// `file:line:column: field: message`, the form compilers use, so editors jump to the spot.
    public var description: String {
        let location = line > 0 ? "\(file):\(line):\(column)" : file
        return field.isEmpty ? "\(location): \(message)" : "\(location): \(field): \(message)"
    }
}

/// A site file that cannot be loaded. Every problem found is listed, in file order; nothing of the file
/// is loaded.
public struct SiteFileError: Error, Sendable, CustomStringConvertible {
    public let diagnostics: [SiteFileDiagnostic]

    public init(_ diagnostics: [SiteFileDiagnostic]) { self.diagnostics = diagnostics }

    /// The first problem (the one to fix first).
    public var first: SiteFileDiagnostic? { diagnostics.first }

    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// The YAML site file: reading, validating, and nothing else. See `Fixtures/sites/coworking.yaml` for a
/// complete example and docs in the type comments below for every field.
///
/// Format (all keys snake_case; unknown keys are errors):
/// ```yaml
/// version: 1                      # optional; only 1 exists
/// organisation: Keyway Labs
/// site: {id: sf-mission, name: Mission, time_zone: America/Los_Angeles}   # offline_capacity: default for every lock
/// locks:
///   - id: main-entrance           # [A-Za-z0-9._-]{1,64}, unique among locks
///     name: Main entrance         # optional, defaults to the id
///     kind: wall_reader           # escutcheon | cylinder | wall_reader | locker
///     position: {x: 0, y: 0, z: 0}   # metres, z optional
///     open_time_s: 7              # 1…240, default 7
///     lock_schedule: ["daily 22:00"]          # times at which the lock locks
///     easy_office_mode: ["mon-fri 08:00-18:00"]
///     battery: {level: 100, low_threshold: 20} # BLE locks only
///     keypad: true                # default: true for wall readers
///     audit_trail_capacity: 1000  # 2…1000000
///     pin_lockout: {attempts: 5, duration_s: 300}
///     offline_capacity: 39        # users on the offline list, 0…1000 (SALTO KS: 39)
///     reach_m: 0.05               # the reader's reach, 0.01…10 m; default by kind (5 cm touch, 10 cm wall reader)
/// door_controllers:
///   - {id: ctl-back, lock: back-door, relay: mag_lock, door_position_switch: true,
///      request_to_exit: true, held_open_limit_s: 30}
/// iqs:
///   - {id: iq-lobby, position: {x: 4, y: 3, z: 2.5}, range_m: 9.144, activation_pin: "482913",
///      activated: true, online: true, sync_interval_s: 60, locks: [optional explicit pairing, ≤ 16]}
/// access_groups:
///   - {id: members, locks: all | [ids], schedule: 24/7 | ["mon-fri 09:00-18:00"], office_mode: false,
///      lockdown_override: false}
/// users:
///   - {id: u-ada, name: Ada, tags: ["04:A2:3B:1C"], pin: "4821", groups: [members],
///      valid_from: 2025-01-06, valid_until: 2025-02-01T00:00:00-08:00, offline_access: false, blocked: false}
/// ```
public enum SiteFile {
    /// Larger files are refused before parsing: a 10,000-lock site is about 2 MiB.
    public static let maximumSize = 64 << 20
    /// Diagnostics beyond this many are dropped (the count is reported) so a wrong file cannot flood.
    public static let maximumDiagnostics = 200

    /// Loads and validates the site file at `path`. Errors name the file as given.
    public static func load(path: String) throws -> SiteConfig {
        let url = URL(fileURLWithPath: path)
        let data: Data
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            if let size = attributes[.size] as? Int, size > maximumSize {
                throw SiteFileError([SiteFileDiagnostic(file: path, line: 0, column: 0, field: "",
                                                        message: "file is \(size) bytes; the limit is \(maximumSize)")])
            }
            data = try Data(contentsOf: url)
        } catch let error as SiteFileError {
            throw error
        } catch {
            throw SiteFileError([SiteFileDiagnostic(file: path, line: 0, column: 0, field: "",
                                                    message: "cannot read: \(error.localizedDescription)")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw SiteFileError([SiteFileDiagnostic(file: path, line: 0, column: 0, field: "",
                                                    message: "not UTF-8 text")])
        }
        return try parse(yaml: text, file: path)
    }

    /// Parses and validates site-file text. `file` is the name used in diagnostics.
    public static func parse(yaml text: String, file: String = "<site>") throws -> SiteConfig {
        guard text.utf8.count <= maximumSize else {
            throw SiteFileError([SiteFileDiagnostic(file: file, line: 0, column: 0, field: "",
                                                    message: "file is \(text.utf8.count) bytes; the limit is \(maximumSize)")])
        }
        let root: Node?
        do {
            // The basic resolver resolves no implicit tags: every scalar stays text and this reader
            // decides what it means per field. It is also much faster than resolving by regular expression.
            root = try Yams.compose(yaml: text, .basic)
        } catch let error as YamlError {
            throw SiteFileError([yamlDiagnostic(error, file: file, text: text)])
        } catch {
            throw SiteFileError([SiteFileDiagnostic(file: file, line: 0, column: 0, field: "", message: "\(error)")])
        }
        guard let root else {
            throw SiteFileError([SiteFileDiagnostic(file: file, line: 1, column: 1, field: "", message: "the file is empty")])
        }
        let reader = SiteFileReader(file: file)
        let config = reader.read(root)
        if let config, reader.diagnostics.isEmpty {
            let validator = SiteValidator(file: file, locate: reader.locate)
            validator.validate(config, batteryExplicit: reader.batteryExplicit)
            if validator.diagnostics.isEmpty, let fixed = validator.fixedConfig { return fixed }
            throw SiteFileError(validator.finished())
        }
        throw SiteFileError(reader.finished())
    }

    private static func yamlDiagnostic(_ error: YamlError, file: String, text: String) -> SiteFileDiagnostic {
        func make(_ mark: Mark, _ problem: String, _ context: YamlError.Context?) -> SiteFileDiagnostic {
            let ctx = context.map { " (\($0.text) at \($0.mark.line):\($0.mark.column))" } ?? ""
            return SiteFileDiagnostic(file: file, line: mark.line, column: mark.column, field: "",
                                      message: "YAML syntax: \(problem)\(ctx)")
        }
        switch error {
        case let .scanner(context, problem, mark, _): return make(mark, problem, context)
        case let .parser(context, problem, mark, _): return make(mark, problem, context)
        case let .composer(context, problem, mark, _): return make(mark, problem, context)
        case let .duplicatedKeysInMapping(duplicates, context):
            let keys = duplicates.map { "'\($0)'" }.joined(separator: ", ")
            return SiteFileDiagnostic(file: file, line: context.mark.line, column: context.mark.column, field: "",
                                      message: "duplicate key \(keys) in the same mapping")
        case let .reader(problem, offset, _, _):
            var line = 1, column = 1
            if let offset {
                for ch in text.prefix(offset) {
                    if ch == "\n" { line += 1; column = 1 } else { column += 1 }
                }
            }
            return SiteFileDiagnostic(file: file, line: line, column: column, field: "", message: "cannot read: \(problem)")
        default:
            return SiteFileDiagnostic(file: file, line: 0, column: 0, field: "", message: "\(error)")
        }
    }
}

// MARK: - Reading nodes

/// Which list of the file an item belongs to, for locating it again when validation finds a problem.
enum SiteSection: String {
    case locks, doorControllers = "door_controllers", iqs, accessGroups = "access_groups", users
}

final class SiteFileReader {
    let file: String
    private(set) var diagnostics: [SiteFileDiagnostic] = []
    private var dropped = 0
    // Item nodes per section, kept while loading so that cross-checks can point at the exact field.
    private var items: [SiteSection: [Node]] = [:]
    /// Per lock: whether the file set `battery` (a controller-driven reader must not).
    private(set) var batteryExplicit: [Bool] = []
    private var timeZone: SiteTimeZone?
    /// `site.offline_capacity`: the offline-list size of every lock that does not set its own.
    private var siteOfflineCapacity = LockConfig.defaultOfflineCapacity

    init(file: String) { self.file = file }

    // MARK: Diagnostics

    func report(_ node: Node?, _ field: String, _ message: String) {
        report(node?.mark, field, message)
    }

    func report(_ mark: Mark?, _ field: String, _ message: String) {
        guard diagnostics.count < SiteFile.maximumDiagnostics else { dropped += 1; return }
        diagnostics.append(SiteFileDiagnostic(file: file, line: mark?.line ?? 0, column: mark?.column ?? 0,
                                              field: field, message: message))
    }

    func finished() -> [SiteFileDiagnostic] {
        var all = diagnostics.sorted { ($0.line, $0.column) < ($1.line, $1.column) }
        if dropped > 0 {
            all.append(SiteFileDiagnostic(file: file, line: 0, column: 0, field: "",
                                          message: "\(dropped) more problems not shown"))
        }
        return all
    }

    /// Finds the mark of `field` (and element `element` of it, if a list) in item `index` of `section`.
    var locate: (SiteSection, Int, String?, Int?) -> Mark? {
        let items = self.items
        return { section, index, field, element in
            guard let list = items[section], index >= 0, index < list.count else { return nil }
            let item = list[index]
            guard let field else { return item.mark }
            guard let value = item.mapping?[field] else { return item.mark }
            if let element, let seq = value.sequence, element >= 0, element < seq.count {
                return seq[seq.index(seq.startIndex, offsetBy: element)].mark
            }
            return value.mark
        }
    }

    // MARK: Scalars

    private static let nullSpellings: Set<String> = ["", "~", "null", "Null", "NULL"]

    func isNull(_ node: Node) -> Bool {
        guard case let .scalar(s) = node else { return false }
        return s.style == .plain && SiteFileReader.nullSpellings.contains(s.string)
    }

    /// A non-null scalar's text, or nil after reporting.
    func text(_ node: Node, _ field: @autoclosure () -> String, what: String = "a string") -> String? {
        guard case let .scalar(s) = node else {
            report(node, field(), "must be \(what), not a \(kind(of: node))")
            return nil
        }
        if s.style == .plain && SiteFileReader.nullSpellings.contains(s.string) {
            report(node, field(), "must be \(what), not empty")
            return nil
        }
        return s.string
    }

    func kind(of node: Node) -> String {
        switch node {
        case .scalar: return "scalar"
        case .mapping: return "mapping"
        case .sequence: return "list"
        case .alias: return "alias"
        }
    }

    func int(_ node: Node, _ field: @autoclosure () -> String, _ range: ClosedRange<Int>) -> Int? {
        guard let t = text(node, field(), what: "an integer") else { return nil }
        var digits = Substring(t)
        if digits.first == "+" || digits.first == "-" { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy(\.isASCIIDigit), let v = Int(t) else {
            report(node, field(), "must be an integer from \(range.lowerBound) to \(range.upperBound), got '\(clip(t))'")
            return nil
        }
        guard range.contains(v) else {
            report(node, field(), "must be from \(range.lowerBound) to \(range.upperBound), got \(v)")
            return nil
        }
        return v
    }

    func double(_ node: Node, _ field: @autoclosure () -> String, _ range: ClosedRange<Double>, unit: String = "") -> Double? {
        guard let t = text(node, field(), what: "a number") else { return nil }
        // Plain decimal only: Swift's Double(String) would also take "nan", "inf" and hex floats.
        let allowed = t.utf8.allSatisfy { c in
            (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: ".") || c == UInt8(ascii: "-")
                || c == UInt8(ascii: "+") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E")
        }
        guard allowed, t.count <= 32, let v = Double(t), v.isFinite else {
            report(node, field(), "must be a number, got '\(clip(t))'")
            return nil
        }
        guard range.contains(v) else {
            report(node, field(), "must be from \(format(range.lowerBound))\(unit) to \(format(range.upperBound))\(unit), got \(format(v))\(unit)")
            return nil
        }
        return v
    }

    func bool(_ node: Node, _ field: @autoclosure () -> String) -> Bool? {
        guard let t = text(node, field(), what: "true or false") else { return nil }
        switch t {
        case "true", "True", "TRUE": return true
        case "false", "False", "FALSE": return false
        default:
            report(node, field(), "must be true or false, got '\(clip(t))'")
            return nil
        }
    }

    static func isValidID(_ s: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 64 else { return false }
        return s.utf8.allSatisfy { c in
            (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
                || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-")
                || c == UInt8(ascii: "_") || c == UInt8(ascii: ".")
        }
    }

    func id(_ node: Node, _ field: @autoclosure () -> String) -> String? {
        guard let t = text(node, field(), what: "an id") else { return nil }
        guard SiteFileReader.isValidID(t) else {
            report(node, field(), "'\(clip(t))' is not a valid id (1–64 of A–Z a–z 0–9 . _ -)")
            return nil
        }
        return t
    }

    static func isValidName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 128 && !s.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    func name(_ node: Node, _ field: @autoclosure () -> String) -> String? {
        guard let t = text(node, field(), what: "a name") else { return nil }
        guard SiteFileReader.isValidName(t) else {
            report(node, field(), "must be 1–128 characters without control characters")
            return nil
        }
        return t
    }

    func digits(_ node: Node, _ field: @autoclosure () -> String, _ lengths: ClosedRange<Int>, what: String) -> String? {
        guard let t = text(node, field(), what: what) else { return nil }
        guard lengths.contains(t.count), t.allSatisfy(\.isASCIIDigit) else {
            // Never echo the value: it is a secret.
            report(node, field(), "must be \(lengths.lowerBound)–\(lengths.upperBound) digits")
            return nil
        }
        return t
    }

    func clip(_ s: String) -> String { s.count > 40 ? String(s.prefix(40)) + "…" : s }

    func format(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : String(v)
    }

    // MARK: Structure

    func list(_ node: Node, _ field: @autoclosure () -> String, max: Int = 1_000_000) -> [Node]? {
        if isNull(node) { return [] }
        guard case let .sequence(seq) = node else {
            report(node, field(), "must be a list, not a \(kind(of: node))")
            return nil
        }
        guard seq.count <= max else {
            report(node, field(), "has \(seq.count) entries; at most \(max) allowed")
            return nil
        }
        return Array(seq)
    }

    /// Walks a mapping's fields, reporting non-string and unknown keys (with a suggestion).
    func fields(_ node: Node, _ field: @autoclosure () -> String, allowed: [String], _ body: (String, Node) -> Void) -> Bool {
        guard case let .mapping(map) = node else {
            report(node, field(), "must be a mapping, not a \(kind(of: node))")
            return false
        }
        for (k, v) in map {
            guard case let .scalar(ks) = k else {
                report(k, field(), "keys must be plain names")
                continue
            }
            let key = ks.string
            if allowed.contains(key) {
                body(key, v)
            } else {
                let path = field().isEmpty ? key : "\(field()).\(key)"
                let hint = suggestion(for: key, among: allowed).map { "; did you mean '\($0)'?" } ?? ""
                report(k, path, "unknown field\(hint)")
            }
        }
        return true
    }

    func missing(_ node: Node, _ field: @autoclosure () -> String, _ key: String) {
        report(node, field(), "missing required field '\(key)'")
    }

    func suggestion(for key: String, among allowed: [String]) -> String? {
        let k = Array(key.lowercased().utf8)
        var best: (String, Int)?
        for candidate in allowed {
            let d = editDistance(k, Array(candidate.utf8))
            if d <= max(2, candidate.count / 3), d < (best?.1 ?? Int.max) { best = (candidate, d) }
        }
        if best == nil, let prefix = allowed.first(where: { $0.hasPrefix(key) || key.hasPrefix($0) }) { return prefix }
        return best?.0
    }

    private func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = previous
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                current[j] = Swift.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }

    // MARK: Document

    func read(_ root: Node) -> SiteConfig? {
        var organisation: String?, siteID: String?, siteName: String?
        var locks: [LockConfig] = [], controllers: [DoorControllerConfig] = [], iqs: [IQConfig] = []
        var groups: [AccessGroupConfig] = [], users: [UserConfig] = []
        var sections: [String: Node] = [:]
        let ok = fields(root, "", allowed: ["version", "organisation", "site", "locks", "door_controllers", "iqs",
                                            "access_groups", "users"]) { key, value in
            sections[key] = value
        }
        guard ok else { return nil }

        if let v = sections["version"], let n = int(v, "version", 1...1000), n != 1 {
            report(v, "version", "this Keyway reads site file version 1, the file says \(n)")
        }
        if let v = sections["organisation"] { organisation = name(v, "organisation") } else { missing(root, "", "organisation") }
        if let site = sections["site"] {
            var sawID = false, sawZone = false
            _ = fields(site, "site", allowed: ["id", "name", "time_zone", "offline_capacity"]) { key, value in
                switch key {
                case "id": sawID = true; siteID = id(value, "site.id")
                case "name": siteName = name(value, "site.name")
                case "offline_capacity":
                    siteOfflineCapacity = int(value, "site.offline_capacity", LockConfig.offlineCapacityRange) ?? siteOfflineCapacity
                default:
                    sawZone = true
                    if let z = text(value, "site.time_zone", what: "an IANA time zone") {
                        if let tz = SiteTimeZone(identifier: z) { timeZone = tz } else {
                            report(value, "site.time_zone", "unknown time zone '\(clip(z))' (use an IANA name such as America/Los_Angeles)")
                        }
                    }
                }
            }
            if case .mapping = site {
                if !sawID { missing(site, "site", "id") }
                if !sawZone { missing(site, "site", "time_zone") }
            }
        } else {
            missing(root, "", "site")
        }

        if let v = sections["locks"], let nodes = list(v, "locks") {
            items[.locks] = nodes
            locks.reserveCapacity(nodes.count)
            batteryExplicit.reserveCapacity(nodes.count)
            for (i, n) in nodes.enumerated() {
                let (lock, explicit) = readLock(n, "locks[\(i)]")
                if let lock { locks.append(lock) } else { locks.append(LockConfig(id: "", kind: .escutcheon)) }
                batteryExplicit.append(explicit)
            }
        }
        if let v = sections["door_controllers"], let nodes = list(v, "door_controllers") {
            items[.doorControllers] = nodes
            for (i, n) in nodes.enumerated() {
                controllers.append(readController(n, "door_controllers[\(i)]")
                                   ?? DoorControllerConfig(id: "", lockID: "", relay: .magLock))
            }
        }
        if let v = sections["iqs"], let nodes = list(v, "iqs") {
            items[.iqs] = nodes
            for (i, n) in nodes.enumerated() {
                iqs.append(readIQ(n, "iqs[\(i)]") ?? IQConfig(id: "", position: Position(x: 0, y: 0), activationPIN: ""))
            }
        }
        if let v = sections["access_groups"], let nodes = list(v, "access_groups") {
            items[.accessGroups] = nodes
            for (i, n) in nodes.enumerated() {
                groups.append(readGroup(n, "access_groups[\(i)]") ?? AccessGroupConfig(id: "", locks: .only([])))
            }
        }
        if let v = sections["users"], let nodes = list(v, "users") {
            items[.users] = nodes
            for (i, n) in nodes.enumerated() {
                users.append(readUser(n, "users[\(i)]") ?? UserConfig(id: ""))
            }
        }

        guard diagnostics.isEmpty, let organisation, let siteID, let timeZone else { return nil }
        return SiteConfig(organisation: organisation, siteID: siteID, name: siteName ?? siteID, timeZone: timeZone,
                          locks: locks, doorControllers: controllers, iqs: iqs, accessGroups: groups, users: users)
    }

    func readPosition(_ node: Node, _ field: @autoclosure () -> String) -> Position? {
        let limit = -Position.maximumCoordinate...Position.maximumCoordinate
        if case let .sequence(seq) = node {
            guard seq.count == 2 || seq.count == 3 else {
                report(node, field(), "must be {x, y} or {x, y, z} in metres (or a list of 2 or 3 numbers)")
                return nil
            }
            let values = seq.enumerated().map { double($0.element, "\(field())[\($0.offset)]", limit, unit: " m") }
            guard values.allSatisfy({ $0 != nil }) else { return nil }
            return Position(x: values[0] ?? 0, y: values[1] ?? 0, z: values.count == 3 ? values[2] ?? 0 : 0)
        }
        var x: Double?, y: Double?, z: Double = 0
        var bad = false
        guard fields(node, field(), allowed: ["x", "y", "z"], { key, value in
            let v = double(value, "\(field()).\(key)", limit, unit: " m")
            if v == nil { bad = true }
            switch key {
            case "x": x = v
            case "y": y = v
            default: z = v ?? 0
            }
        }) else { return nil }
        if x == nil && !bad { missing(node, field(), "x"); bad = true }
        if y == nil && !bad { missing(node, field(), "y"); bad = true }
        guard !bad, let x, let y else { return nil }
        return Position(x: x, y: y, z: z)
    }

    /// A list of schedule strings; a single string is accepted as a one-entry list.
    func readWindows(_ node: Node, _ field: @autoclosure () -> String) -> Timetable? {
        let entries: [Node]
        if case .scalar = node, !isNull(node) { entries = [node] } else {
            guard let l = list(node, field(), max: 64) else { return nil }
            entries = l
        }
        var windows: [WeeklyWindow] = []
        var ok = true
        for (i, e) in entries.enumerated() {
            let path = entries.count == 1 && node.sequence == nil ? field() : "\(field())[\(i)]"
            guard let t = text(e, path, what: "a weekly window") else { ok = false; continue }
            if let w = WeeklyWindow(parsing: t) { windows.append(w) } else {
                ok = false
                report(e, path, "'\(clip(t))' is not a weekly window (e.g. 'mon-fri 09:00-18:00', 'sat,sun', '24/7')")
            }
        }
        return ok ? Timetable(windows) : nil
    }

    func readLock(_ node: Node, _ field: @autoclosure () -> String) -> (LockConfig?, Bool) {
        var lockID: String?, lockName: String?, kind: LockKind?, position: Position?
        var openTime = LockConfig.defaultOpenTime, schedule: [ScheduledTime] = [], easy = Timetable.never
        var battery: BatteryConfig? = BatteryConfig(), explicitBattery = false, keypad: Bool?
        var capacity = LockConfig.defaultTrailCapacity, lockout = PINLockoutPolicy()
        var offlineCapacity = siteOfflineCapacity
        var reach: Double?
        var sawKind = false, sawPosition = false, sawID = false
        let before = diagnostics.count
        let allowed = ["id", "name", "kind", "position", "open_time_s", "lock_schedule", "easy_office_mode", "battery",
                       "keypad", "audit_trail_capacity", "pin_lockout", "offline_capacity", "reach_m"]
        guard fields(node, field(), allowed: allowed, { key, value in
            switch key {
            case "id": sawID = true; lockID = id(value, "\(field()).\(key)")
            case "name": lockName = name(value, "\(field()).\(key)")
            case "kind":
                sawKind = true
                if let t = text(value, "\(field()).\(key)", what: "a lock kind") {
                    kind = LockKind(rawValue: t)
                    if kind == nil {
                        report(value, "\(field()).\(key)", "'\(clip(t))' is not a lock kind (escutcheon, cylinder, wall_reader, locker)")
                    }
                }
            case "position": sawPosition = true; position = readPosition(value, "\(field()).\(key)")
            case "open_time_s": openTime = int(value, "\(field()).\(key)", LockConfig.openTimeRange) ?? openTime
            case "lock_schedule":
                let entries: [Node]?
                if case .scalar = value, !isNull(value) { entries = [value] } else { entries = list(value, "\(field()).\(key)", max: 64) }
                for (i, e) in (entries ?? []).enumerated() {
                    let p = "\(field()).\(key)[\(i)]"
                    guard let t = text(e, p, what: "a lock time") else { continue }
                    if let s = ScheduledTime(parsing: t) { schedule.append(s) } else {
                        report(e, p, "'\(clip(t))' is not a lock time (e.g. 'mon-fri 19:00' or '23:30')")
                    }
                }
            case "easy_office_mode": easy = readWindows(value, "\(field()).\(key)") ?? .never
            case "battery":
                explicitBattery = true
                var b = BatteryConfig()
                _ = fields(value, "\(field()).\(key)", allowed: ["level", "low_threshold"]) { k, v in
                    if k == "level" { b.level = UInt8(int(v, "\(field()).\(key).\(k)", 0...100) ?? 100) }
                    else { b.lowThreshold = UInt8(int(v, "\(field()).\(key).\(k)", 0...99) ?? 20) }
                }
                battery = b
            case "keypad": keypad = bool(value, "\(field()).\(key)")
            case "audit_trail_capacity": capacity = int(value, "\(field()).\(key)", LockConfig.trailCapacityRange) ?? capacity
            case "offline_capacity":
                offlineCapacity = int(value, "\(field()).\(key)", LockConfig.offlineCapacityRange) ?? offlineCapacity
            case "reach_m": reach = double(value, "\(field()).\(key)", LockConfig.reachRange, unit: " m")
            default:
                _ = fields(value, "\(field()).\(key)", allowed: ["attempts", "duration_s"]) { k, v in
                    if k == "attempts" { lockout.attempts = UInt8(int(v, "\(field()).\(key).\(k)", 1...20) ?? 5) }
                    else { lockout.durationSeconds = UInt32(int(v, "\(field()).\(key).\(k)", 1...86_400) ?? 300) }
                }
            }
        }) else { return (nil, false) }
        if !sawID { missing(node, field(), "id") }
        if !sawKind { missing(node, field(), "kind") }
        if !sawPosition { missing(node, field(), "position") }
        guard diagnostics.count == before, let lockID, let kind, let position else { return (nil, explicitBattery) }
        return (LockConfig(id: lockID, name: lockName, kind: kind, position: position, openTime: openTime,
                           lockSchedule: schedule, easyOfficeMode: easy, battery: battery, keypad: keypad,
                           trailCapacity: capacity, pinLockout: lockout, offlineCapacity: offlineCapacity, reach: reach), explicitBattery)
    }

    func readController(_ node: Node, _ field: @autoclosure () -> String) -> DoorControllerConfig? {
        var cid: String?, cname: String?, lock: String?, relay: RelayKind?
        var dps = true, rex = true, held = DoorControllerConfig.defaultHeldOpenLimit
        var sawID = false, sawLock = false, sawRelay = false
        let before = diagnostics.count
        guard fields(node, field(), allowed: ["id", "name", "lock", "relay", "door_position_switch", "request_to_exit",
                                            "held_open_limit_s"], { key, value in
            switch key {
            case "id": sawID = true; cid = id(value, "\(field()).\(key)")
            case "name": cname = name(value, "\(field()).\(key)")
            case "lock": sawLock = true; lock = id(value, "\(field()).\(key)")
            case "relay":
                sawRelay = true
                if let t = text(value, "\(field()).\(key)", what: "a relay kind") {
                    relay = RelayKind(rawValue: t)
                    if relay == nil {
                        report(value, "\(field()).\(key)", "'\(clip(t))' is not a relay kind (electric_strike_fail_secure, electric_strike_fail_safe, mag_lock)")
                    }
                }
            case "door_position_switch": dps = bool(value, "\(field()).\(key)") ?? dps
            case "request_to_exit": rex = bool(value, "\(field()).\(key)") ?? rex
            default: held = int(value, "\(field()).\(key)", DoorControllerConfig.heldOpenLimitRange) ?? held
            }
        }) else { return nil }
        if !sawID { missing(node, field(), "id") }
        if !sawLock { missing(node, field(), "lock") }
        if !sawRelay { missing(node, field(), "relay") }
        guard diagnostics.count == before, let cid, let lock, let relay else { return nil }
        return DoorControllerConfig(id: cid, name: cname, lockID: lock, relay: relay, doorPositionSwitch: dps,
                                    requestToExit: rex, heldOpenLimit: held)
    }

    func readIQ(_ node: Node, _ field: @autoclosure () -> String) -> IQConfig? {
        var iid: String?, iname: String?, position: Position?, range = IQRadio.defaultRange, pin: String?
        var activated = true, online = true, interval = IQConfig.defaultSyncInterval, paired: [String]?
        var sawID = false, sawPosition = false, sawPIN = false
        let before = diagnostics.count
        guard fields(node, field(), allowed: ["id", "name", "position", "range_m", "activation_pin", "activated", "online",
                                            "sync_interval_s", "locks"], { key, value in
            switch key {
            case "id": sawID = true; iid = id(value, "\(field()).\(key)")
            case "name": iname = name(value, "\(field()).\(key)")
            case "position": sawPosition = true; position = readPosition(value, "\(field()).\(key)")
            case "range_m": range = double(value, "\(field()).\(key)", IQConfig.rangeLimits, unit: " m") ?? range
            case "activation_pin": sawPIN = true; pin = digits(value, "\(field()).\(key)", 4...12, what: "the activation PIN")
            case "activated": activated = bool(value, "\(field()).\(key)") ?? activated
            case "online": online = bool(value, "\(field()).\(key)") ?? online
            case "sync_interval_s": interval = int(value, "\(field()).\(key)", IQConfig.syncIntervalRange) ?? interval
            default:
                if let entries = list(value, "\(field()).\(key)") {
                    if entries.count > IQRadio.maximumLocks {
                        report(value, "\(field()).\(key)", "an IQ serves at most \(IQRadio.maximumLocks) locks; \(entries.count) listed")
                    }
                    paired = entries.enumerated().compactMap { id($0.element, "\(field()).\(key)[\($0.offset)]") }
                }
            }
        }) else { return nil }
        if !sawID { missing(node, field(), "id") }
        if !sawPosition { missing(node, field(), "position") }
        if !sawPIN { missing(node, field(), "activation_pin") }
        guard diagnostics.count == before, let iid, let position, let pin else { return nil }
        return IQConfig(id: iid, name: iname, position: position, range: range, activationPIN: pin,
                        activated: activated, online: online, syncInterval: interval, pairedLocks: paired)
    }

    func readGroup(_ node: Node, _ field: @autoclosure () -> String) -> AccessGroupConfig? {
        var gid: String?, gname: String?, locks: LockSelection?, schedule: Timetable?, office = false, override = false
        var sawID = false, sawLocks = false, sawSchedule = false
        let before = diagnostics.count
        guard fields(node, field(), allowed: ["id", "name", "locks", "schedule", "office_mode", "lockdown_override"], { key, value in
            switch key {
            case "id": sawID = true; gid = id(value, "\(field()).\(key)")
            case "name": gname = name(value, "\(field()).\(key)")
            case "locks":
                sawLocks = true
                if case let .scalar(s) = value, s.string == "all" { locks = .all; return }
                if case .scalar = value, !isNull(value) {
                    report(value, "\(field()).\(key)", "must be 'all' or a list of lock ids")
                    return
                }
                if let entries = list(value, "\(field()).\(key)") {
                    locks = .only(entries.enumerated().compactMap { id($0.element, "\(field()).\(key)[\($0.offset)]") })
                }
            case "schedule": sawSchedule = true; schedule = readWindows(value, "\(field()).\(key)")
            case "lockdown_override": override = bool(value, "\(field()).\(key)") ?? false
            default: office = bool(value, "\(field()).\(key)") ?? false
            }
        }) else { return nil }
        if !sawID { missing(node, field(), "id") }
        if !sawLocks { missing(node, field(), "locks") }
        // Deny by default: a group without a schedule would be ambiguous, so it must say "24/7" itself.
        if !sawSchedule { missing(node, field(), "schedule") }
        guard diagnostics.count == before, let gid, let locks, let schedule else { return nil }
        if schedule.windows.isEmpty {
            report(node.mapping?["schedule"] ?? node, "\(field()).schedule", "must list at least one window (or '24/7')")
            return nil
        }
        return AccessGroupConfig(id: gid, name: gname, locks: locks, schedule: schedule, officeMode: office,
                                 lockdownOverride: override)
    }

    func readUser(_ node: Node, _ field: @autoclosure () -> String) -> UserConfig? {
        var uid: String?, uname: String?, tags: [TagUID] = [], pin: String?, groups: [String] = []
        var from: Date?, until: Date?, offline = false, blocked = false
        var sawID = false
        let before = diagnostics.count
        guard fields(node, field(), allowed: ["id", "name", "tags", "pin", "groups", "valid_from", "valid_until",
                                              "offline_access", "blocked"], { key, value in
            switch key {
            case "id": sawID = true; uid = id(value, "\(field()).\(key)")
            case "name": uname = name(value, "\(field()).\(key)")
            case "tags":
                guard let entries = list(value, "\(field()).\(key)") else { return }
                if entries.count > UserConfig.maximumTags {
                    report(value, "\(field()).\(key)", "a user has at most \(UserConfig.maximumTags) tags; \(entries.count) listed")
                    return
                }
                for (i, e) in entries.enumerated() {
                    let p = "\(field()).\(key)[\(i)]"
                    guard let t = text(e, p, what: "a tag UID") else { continue }
                    if let tag = TagUID(hex: t) { tags.append(tag) } else {
                        report(e, p, "'\(clip(t))' is not a tag UID (4–10 bytes of hex, e.g. 04:A2:3B:1C:5D:80)")
                    }
                }
            case "pin": pin = digits(value, "\(field()).\(key)", UserConfig.pinLengths, what: "a PIN")
            case "groups":
                if let entries = list(value, "\(field()).\(key)") {
                    groups = entries.enumerated().compactMap { id($0.element, "\(field()).\(key)[\($0.offset)]") }
                }
            case "valid_from": from = readDate(value, "\(field()).\(key)", endOfDay: false)
            case "offline_access": offline = bool(value, "\(field()).\(key)") ?? false
            case "blocked": blocked = bool(value, "\(field()).\(key)") ?? false
            default: until = readDate(value, "\(field()).\(key)", endOfDay: true)
            }
        }) else { return nil }
        if !sawID { missing(node, field(), "id") }
        guard diagnostics.count == before, let uid else { return nil }
        if let from, let until, until <= from {
            report(node.mapping?["valid_until"] ?? node, "\(field()).valid_until", "must be after valid_from")
            return nil
        }
        return UserConfig(id: uid, name: uname, tags: tags, pin: pin, groups: groups, validFrom: from, validUntil: until,
                          offlineAccess: offline, blocked: blocked)
    }

    /// `YYYY-MM-DD` (midnight in the site's zone; for an end date, the midnight that ends that day) or
    /// `YYYY-MM-DDTHH:MM[:SS]` with `Z` or `±HH:MM` (site local time if neither).
    func readDate(_ node: Node, _ field: @autoclosure () -> String, endOfDay: Bool) -> Date? {
        guard let t = text(node, field(), what: "a date") else { return nil }
        guard let parsed = ISODate.parse(t) else {
            report(node, field(), "'\(clip(t))' is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS±HH:MM)")
            return nil
        }
        let zone = timeZone ?? .utc
        switch parsed {
        case let .day(day):
            return zone.date(localDay: day + (endOfDay ? 1 : 0), minute: 0)
        case let .local(day, second):
            return zone.date(localDay: day, minute: 0).addingTimeInterval(Double(second))
        case let .instant(date):
            return date
        }
    }
}

/// Strict ISO 8601 subset for site files.
enum ISODate {
    enum Parsed { case day(Int), local(day: Int, second: Int), instant(Date) }

    static func parse(_ s: String) -> Parsed? {
        let u = Array(s.utf8)
        guard u.count >= 10, u.count <= 35 else { return nil }
        func num(_ r: Range<Int>) -> Int? {
            guard r.upperBound <= u.count else { return nil }
            var v = 0
            for i in r {
                guard u[i] >= 48, u[i] <= 57 else { return nil }
                v = v * 10 + Int(u[i] - 48)
            }
            return v
        }
        guard let y = num(0..<4), u[4] == UInt8(ascii: "-"), let m = num(5..<7), u[7] == UInt8(ascii: "-"),
              let d = num(8..<10), (1...12).contains(m), (1...daysIn(m, y)).contains(d), y >= 1970 else { return nil }
        let day = daysFromCivil(y, m, d)
        if u.count == 10 { return .day(day) }
        guard u[10] == UInt8(ascii: "T") || u[10] == UInt8(ascii: " "), let hh = num(11..<13), u.count >= 16,
              u[13] == UInt8(ascii: ":"), let mm = num(14..<16), hh < 24, mm < 60 else { return nil }
        var i = 16, ss = 0
        if i < u.count, u[i] == UInt8(ascii: ":") {
            guard let s2 = num(17..<19), s2 < 60 else { return nil }
            ss = s2
            i = 19
            if i < u.count, u[i] == UInt8(ascii: ".") {  // fractional seconds are ignored
                i += 1
                while i < u.count, u[i] >= 48, u[i] <= 57 { i += 1 }
            }
        }
        let second = hh * 3600 + mm * 60 + ss
        if i == u.count { return .local(day: day, second: second) }
        if u[i] == UInt8(ascii: "Z"), i + 1 == u.count {
            return .instant(Date(timeIntervalSince1970: Double(day * 86_400 + second)))
        }
        guard u[i] == UInt8(ascii: "+") || u[i] == UInt8(ascii: "-"), u.count == i + 6, let oh = num(i + 1..<i + 3),
              u[i + 3] == UInt8(ascii: ":"), let om = num(i + 4..<i + 6), oh < 24, om < 60 else { return nil }
        let offset = (oh * 3600 + om * 60) * (u[i] == UInt8(ascii: "-") ? -1 : 1)
        return .instant(Date(timeIntervalSince1970: Double(day * 86_400 + second - offset)))
    }

    static func daysIn(_ m: Int, _ y: Int) -> Int {
        switch m {
        case 2: return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}
